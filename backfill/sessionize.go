package backfill

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strings"

	"github.com/minio/minio-go/v7"
	"go.temporal.io/sdk/activity"
	"golang.org/x/sync/errgroup"

	"github.com/sessionflow/sessionflow/session"
	"github.com/sessionflow/sessionflow/store"
)

// ShardInput is phase 2 of a backfill for one shard: sessionize the
// shard's events with the batch engine and write them as Parquet.
type ShardInput struct {
	ID       string        `json:"id"`
	Out      string        `json:"out"`
	Pipeline string        `json:"pipeline"`
	Rules    session.Rules `json:"rules"`
	Shard    int           `json:"shard"`
	// MaxTime is the largest event time of the whole input, the batch's
	// final watermark: a shard's own largest time would close its last
	// sessions differently from `starter sessionize` over all the input.
	MaxTime int64 `json:"max_time_ms"`
}

// ShardResult is what sessionizing one shard did.
type ShardResult struct {
	Pieces     int   `json:"pieces"` // intermediate objects read
	Events     int64 `json:"events"`
	Sessions   int64 `json:"sessions"` // records written
	Duplicates int64 `json:"duplicates"`
	Ignored    int64 `json:"ignored"`
	Objects    int   `json:"objects"` // Parquet objects written, by this attempt or earlier ones
	// ResumedChunk is the chunk this attempt resumed writing at; 0 when
	// it wrote from the first.
	ResumedChunk int `json:"resumed_chunk,omitempty"`
}

// shardProgress is the heartbeat of phase 2: chunks before Chunks are in S3.
type shardProgress struct {
	Chunks  int `json:"chunks"`
	Objects int `json:"objects"`
}

// chunkRows is how many records one store.WriteSessions call gets, which
// bounds the memory of encoding. A variable for tests.
var chunkRows = 200_000

// SessionizeShard runs phase 2 (the SessionizeBackfillShard activity) for
// one shard. Its output objects are
// <out>/sessions/session_date=D/bucket=SS/backfill-<id>-SSSS-<chunk>.parquet,
// written by store.WriteSessions (the streaming sinks' writer) with the
// shard as bucket: records are cut into chunks in key order and each chunk
// into dates. It heartbeats after every chunk; a retry sessionizes again
// (the result is the same) and writes only the chunks the heartbeat does not
// cover.
//
// Memory: the shard's events and records, about 150 bytes per event.
func SessionizeShard(ctx context.Context, s3 *minio.Client, in ShardInput) (ShardResult, error) {
	bucket, prefix, err := checkBackfill(in.ID, in.Out)
	if err != nil {
		return ShardResult{}, err
	}
	if in.Shard < 0 || in.Shard >= MaxShards {
		return ShardResult{}, store.BadInput("sessionize shard", fmt.Errorf("shard %d: want 0 to %d", in.Shard, MaxShards-1))
	}
	if err := checkRules(&in.Rules); err != nil {
		return ShardResult{}, err
	}
	var prog shardProgress
	if activity.HasHeartbeatDetails(ctx) {
		var last shardProgress
		if err := activity.GetHeartbeatDetails(ctx, &last); err == nil {
			prog = last
		}
	}
	hb := startHeartbeat(ctx, prog)
	defer hb.stop()

	events, pieces, err := readShard(ctx, s3, bucket, shardPrefix(prefix, in.ID, in.Shard))
	if err != nil {
		return ShardResult{}, err
	}
	res := ShardResult{Pieces: pieces, Events: int64(len(events)), ResumedChunk: prog.Chunks}
	if len(events) == 0 {
		return res, nil
	}
	records, stats := sessionizeWithWatermark(&in.Rules, in.Pipeline, events, in.MaxTime)
	events = nil
	res.Sessions, res.Duplicates, res.Ignored = int64(len(records)), stats.Duplicates, stats.Ignored

	sink := fmt.Sprintf("backfill/%s/%04d", in.ID, in.Shard)
	for chunk := 0; chunk*chunkRows < len(records); chunk++ {
		if chunk < prog.Chunks {
			continue // written by an earlier attempt
		}
		rows := records[chunk*chunkRows : min(len(records), (chunk+1)*chunkRows)]
		w, err := store.WriteSessions(ctx, s3, bucket, store.WriteSessionsInput{Prefix: prefix, Sink: sink, Bucket: in.Shard,
			Seq: int64(chunk), Profile: in.Rules.Profile, Records: rows}, store.ActivityLog(ctx))
		if err != nil {
			return res, err
		}
		prog = shardProgress{Chunks: chunk + 1, Objects: prog.Objects + len(w.Objects)}
		hb.set(prog)
	}
	res.Objects = prog.Objects
	activity.GetLogger(ctx).Info("sessionized shard", "shard", in.Shard, "events", res.Events,
		"sessions", res.Sessions, "objects", res.Objects)
	return res, nil
}

// sessionizeWithWatermark is session.Sessionize with a given final
// watermark. Sessionize takes the largest event time of its events as the
// watermark; one extra event at maxTime under the empty key, which no real
// event has (the decoder rejects it), makes that the whole input's, and its
// own session (or its ignoring) is taken out again.
func sessionizeWithWatermark(r *session.Rules, pipeline string, events []session.Keyed, maxTime int64) ([]session.Record, session.Stats) {
	sentinel := maxTime != session.NoWatermark
	if sentinel {
		events = append(events, session.Keyed{Event: session.Event{Time: maxTime}})
	}
	records, stats := session.Sessionize(r, pipeline, events)
	if !sentinel {
		return records, stats
	}
	// Records are sorted by key, so the empty key's come first.
	n := 0
	for n < len(records) && records[n].Key == "" {
		n++
	}
	if n == 0 {
		stats.Ignored-- // the rules did not let it open a session
	}
	return records[n:], stats
}

// readShard reads a shard's intermediate objects, a few at a time.
func readShard(ctx context.Context, s3 *minio.Client, bucket, dir string) ([]session.Keyed, int, error) {
	var keys []string
	for obj := range s3.ListObjectsIter(ctx, bucket, minio.ListObjectsOptions{Prefix: dir, Recursive: true}) {
		if obj.Err != nil {
			return nil, 0, s3Error("list shard", "s3://"+bucket+"/"+dir, obj.Err)
		}
		keys = append(keys, obj.Key)
	}
	slices.SortFunc(keys, strings.Compare)
	// Fetch and decompress in parallel, then decode in parallel into one
	// slice sized from the pieces' counts.
	raws := make([][]byte, len(keys))
	counts := make([]int, len(keys))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(4)
	for i, key := range keys {
		g.Go(func() error {
			data, err := store.ReadObject(gctx, s3, bucket, key)
			if err != nil {
				return s3Error("read shard", "s3://"+bucket+"/"+key, err)
			}
			if raws[i], err = decompressPiece(data); err == nil {
				counts[i], err = pieceCount(raws[i])
			}
			if err != nil {
				return store.BadInput("read shard", fmt.Errorf("s3://%s/%s: %w", bucket, key, err))
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, 0, err
	}
	total := 0
	for _, n := range counts {
		total += n
	}
	events := make([]session.Keyed, total)
	g, _ = errgroup.WithContext(ctx)
	g.SetLimit(runtime.GOMAXPROCS(0))
	off := 0
	for i, raw := range raws {
		dst := events[off : off : off+counts[i]]
		off += counts[i]
		g.Go(func() error {
			// Interning per piece keeps the goroutines apart; a key's
			// string is shared within a piece.
			if _, err := decodePiece(raw, map[string]string{}, dst); err != nil {
				return store.BadInput("read shard", fmt.Errorf("s3://%s/%s: %w", bucket, keys[i], err))
			}
			raws[i] = nil
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, 0, err
	}
	return events, len(keys), nil
}
