// Package backfill is the engine behind BackfillWorkflow: it sessionizes
// history (JSON lines, gzip-compressed or not, and Parquet, in S3 or on the
// workers' disks) with the batch engine, in parallel, and writes the
// sessions as the streaming sinks do (package store). The workflow runs it
// as activities (activities.Activities wraps Prepare, Route,
// SessionizeShard and Cleanup), in two phases over objects under its
// output prefix:
//
//	<out>/_tmp/<id>/manifest/NNNNNN.json           the input objects, in order (Prepare)
//	<out>/_tmp/<id>/shard=SSSS/IIIIIII-PPPPP.sfe    phase 1: input I, part P, events of shard S (Route)
//	<out>/rejects/<id>-IIIIIII-PPPPP.jsonl          phase 1: the invalid lines of input I, part P
//	<out>/sessions/session_date=…/bucket=SS/backfill-<id>-SSSS-<chunk>.parquet   phase 2 (SessionizeShard)
//
// Every name is a function of the request and of positions in the input, so
// a retried activity overwrites exactly what its earlier attempt wrote.
// Cleanup removes _tmp/<id>/ when the backfill has succeeded.
package backfill

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/minio/minio-go/v7"
	"go.temporal.io/sdk/activity"

	"github.com/sessionflow/sessionflow/session"
	"github.com/sessionflow/sessionflow/store"
)

// PrepareInput is the input of Prepare (the PrepareBackfill activity).
type PrepareInput struct {
	// ID names the backfill's intermediate data and output objects.
	ID string `json:"id"`
	// Out is s3://bucket/prefix: the backfill's output.
	Out string `json:"out"`
	// Inputs are s3://bucket/prefix or absolute local paths (files or
	// directories), in the order their events count as arrival order.
	Inputs []string `json:"inputs"`
}

// Manifest says what Prepare found.
type Manifest struct {
	Objects int   `json:"objects"`
	Bytes   int64 `json:"bytes"`
}

// inputObject is one manifest entry: an s3:// URL or an absolute path.
type inputObject struct {
	URL  string `json:"url"`
	Size int64  `json:"size"`
}

// manifestChunk is the number of inputs per manifest object: a routing
// activity reads one small object to learn its input, and the workflow never
// holds the list.
const manifestChunk = 1000

// maxInputs bounds the number of input objects: an event's arrival
// order is (input index, line) packed into the 64-bit Seq, with 40 bits for
// the line.
const maxInputs = 1 << 22

const seqLineBits = 40

// backfillSeq is the arrival order of line ln of input index: the order of
// the inputs concatenated in manifest order.
func backfillSeq(index int, ln int64) int64 { return int64(index)<<seqLineBits | ln }

var backfillIDRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,63}$`)

// checkBackfill validates what every backfill activity gets; its errors are
// non-retryable.
func checkBackfill(id, out string) (bucket, prefix string, err error) {
	if !backfillIDRE.MatchString(id) {
		return "", "", store.BadInput("backfill", fmt.Errorf("backfill id %q: want lower-case letters, digits and -", id))
	}
	bucket, prefix, ok := store.ParseS3URL(out)
	if !ok {
		return "", "", store.BadInput("backfill", fmt.Errorf("output %q: want s3://bucket/prefix", out))
	}
	return bucket, prefix, nil
}

func tmpPrefix(prefix, id string) string { return store.JoinPrefix(prefix, "_tmp/"+id) }

func manifestKey(prefix, id string, chunk int) string {
	return fmt.Sprintf("%s/manifest/%06d.json", tmpPrefix(prefix, id), chunk)
}

func shardPrefix(prefix, id string, shard int) string {
	return fmt.Sprintf("%s/shard=%04d/", tmpPrefix(prefix, id), shard)
}

func pieceKey(prefix, id string, shard, index, part int) string {
	return fmt.Sprintf("%s%07d-%05d.sfe", shardPrefix(prefix, id, shard), index, part)
}

func rejectsKey(prefix, id string, index, part int) string {
	return fmt.Sprintf("%s/%s-%07d-%05d.jsonl", store.JoinPrefix(prefix, rejectsDir), id, index, part)
}

const rejectsDir = "rejects"

// Prepare starts a backfill afresh: it removes what an earlier,
// failed run of the same backfill left under _tmp/<id>/, lists the inputs
// and stores the list as the manifest. Directories and prefixes are listed
// recursively in lexical order of the full path or key, skipping names that
// start with "." or "_" below the given path (_SUCCESS, .crc files); a file
// or key named exactly is always taken.
//
// Local paths are read by the worker: they must exist on the machine (or the
// shared volume) of every worker of the task queue.
func Prepare(ctx context.Context, s3 *minio.Client, in PrepareInput) (Manifest, error) {
	bucket, prefix, err := checkBackfill(in.ID, in.Out)
	if err != nil {
		return Manifest{}, err
	}
	hb := startHeartbeat(ctx, 0) // listing a big prefix takes a while
	defer hb.stop()
	if _, err := removeAll(ctx, s3, bucket, tmpPrefix(prefix, in.ID)+"/"); err != nil {
		return Manifest{}, err
	}
	var objs []inputObject
	for _, input := range in.Inputs {
		found, err := listInput(ctx, s3, input)
		if err != nil {
			return Manifest{}, err
		}
		if len(found) == 0 {
			return Manifest{}, store.BadInput("list inputs", fmt.Errorf("%s: no input objects there", input))
		}
		objs = append(objs, found...)
		hb.set(len(objs))
	}
	if len(objs) > maxInputs {
		return Manifest{}, store.BadInput("list inputs",
			fmt.Errorf("%d input objects, at most %d per backfill: split the backfill by prefix", len(objs), maxInputs))
	}
	var res Manifest
	for chunk := 0; chunk*manifestChunk < len(objs); chunk++ {
		part := objs[chunk*manifestChunk : min(len(objs), (chunk+1)*manifestChunk)]
		data, err := json.Marshal(part)
		if err != nil {
			return res, err
		}
		key := manifestKey(prefix, in.ID, chunk)
		if _, err := s3.PutObject(ctx, bucket, key, bytes.NewReader(data), int64(len(data)),
			minio.PutObjectOptions{ContentType: "application/json"}); err != nil {
			return res, fmt.Errorf("write manifest %s: %w", key, err)
		}
	}
	res.Objects = len(objs)
	for _, o := range objs {
		res.Bytes += o.Size
	}
	activity.GetLogger(ctx).Info("backfill inputs listed", "id", in.ID, "objects", res.Objects, "bytes", res.Bytes)
	return res, nil
}

// listInput expands one input into its objects.
func listInput(ctx context.Context, s3 *minio.Client, input string) ([]inputObject, error) {
	if bucket, key, ok := store.ParseS3URL(input); ok {
		return listS3(ctx, s3, bucket, key)
	}
	if !filepath.IsAbs(input) {
		return nil, store.BadInput("list inputs", fmt.Errorf("%q: want s3://bucket/prefix or an absolute path", input))
	}
	return listLocal(input)
}

func listS3(ctx context.Context, s3 *minio.Client, bucket, key string) ([]inputObject, error) {
	url := func(k string) string { return "s3://" + bucket + "/" + k }
	if key != "" {
		// A key names one object, unless it is a "directory".
		info, err := s3.StatObject(ctx, bucket, key, minio.StatObjectOptions{})
		if err == nil {
			return []inputObject{{URL: url(key), Size: info.Size}}, nil
		}
		if code := minio.ToErrorResponse(err).Code; code != minio.NoSuchKey && code != "NotFound" {
			return nil, s3Error("list inputs", "s3://"+bucket+"/"+key, err)
		}
	}
	dir := key
	if dir != "" {
		dir += "/"
	}
	var out []inputObject
	for obj := range s3.ListObjectsIter(ctx, bucket, minio.ListObjectsOptions{Prefix: dir, Recursive: true}) {
		if obj.Err != nil {
			return nil, s3Error("list inputs", "s3://"+bucket+"/"+dir, obj.Err)
		}
		if strings.HasSuffix(obj.Key, "/") || hidden(strings.TrimPrefix(obj.Key, dir)) {
			continue
		}
		out = append(out, inputObject{URL: url(obj.Key), Size: obj.Size})
	}
	// S3 lists in key order already; MinIO on a file system too, but say it.
	slices.SortFunc(out, func(a, b inputObject) int { return strings.Compare(a.URL, b.URL) })
	return out, nil
}

func listLocal(root string) ([]inputObject, error) {
	info, err := os.Stat(root)
	if err != nil {
		return nil, localError("list inputs", err)
	}
	if !info.IsDir() {
		return []inputObject{{URL: root, Size: info.Size()}}, nil
	}
	// Walk the directory a symlinked root points to.
	if root, err = filepath.EvalSymlinks(root); err != nil {
		return nil, localError("list inputs", err)
	}
	var out []inputObject
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if path == root {
			return nil
		}
		if strings.HasPrefix(d.Name(), ".") || strings.HasPrefix(d.Name(), "_") {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		fi, err := os.Stat(path) // through a symlink to its file
		if err != nil || !fi.Mode().IsRegular() {
			return nil // a dangling link, a device, a link to a directory
		}
		out = append(out, inputObject{URL: path, Size: fi.Size()})
		return nil
	})
	if err != nil {
		return nil, localError("list inputs", err)
	}
	slices.SortFunc(out, func(a, b inputObject) int { return strings.Compare(a.URL, b.URL) })
	return out, nil
}

// hidden reports whether a relative path has a segment starting with "."
// or "_".
func hidden(rel string) bool {
	for seg := range strings.SplitSeq(rel, "/") {
		if strings.HasPrefix(seg, ".") || strings.HasPrefix(seg, "_") {
			return true
		}
	}
	return false
}

// localError makes a missing or unreadable local input non-retryable: a
// retry on this worker cannot find it either.
func localError(op string, err error) error {
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) {
		return store.BadInput(op, fmt.Errorf("%w (local inputs are read by the worker: the path must exist on its machine, or upload the files to S3 first)", err))
	}
	return fmt.Errorf("%s: %w", op, err)
}

// s3Error makes a missing bucket or object non-retryable; everything else
// (an outage, a timeout) is retried.
func s3Error(op, what string, err error) error {
	switch minio.ToErrorResponse(err).Code {
	case minio.NoSuchBucket, minio.NoSuchKey, "AccessDenied", "InvalidBucketName":
		return store.BadInput(op, fmt.Errorf("%s: %w", what, err))
	}
	return fmt.Errorf("%s %s: %w", op, what, err)
}

// readManifest returns input index of the backfill.
func readManifest(ctx context.Context, s3 *minio.Client, bucket, prefix, id string, index int) (inputObject, error) {
	key := manifestKey(prefix, id, index/manifestChunk)
	data, err := store.ReadObject(ctx, s3, bucket, key)
	if err != nil {
		return inputObject{}, s3Error("read manifest", key, err)
	}
	var objs []inputObject
	if err := json.Unmarshal(data, &objs); err != nil {
		return inputObject{}, store.BadInput("read manifest", fmt.Errorf("%s: %w", key, err))
	}
	if i := index % manifestChunk; i < len(objs) {
		return objs[i], nil
	}
	return inputObject{}, store.BadInput("read manifest", fmt.Errorf("input %d is not in %s", index, key))
}

// CleanupInput is the input of Cleanup (the CleanupBackfill activity).
type CleanupInput struct {
	ID  string `json:"id"`
	Out string `json:"out"`
}

// Cleanup deletes the backfill's intermediate objects (_tmp/<id>/)
// and returns how many there were. Deleting what is already gone is not an
// error, so a retry is harmless.
func Cleanup(ctx context.Context, s3 *minio.Client, in CleanupInput) (int, error) {
	bucket, prefix, err := checkBackfill(in.ID, in.Out)
	if err != nil {
		return 0, err
	}
	hb := startHeartbeat(ctx, 0)
	defer hb.stop()
	return removeAll(ctx, s3, bucket, tmpPrefix(prefix, in.ID)+"/")
}

// removeAll deletes every object under prefix and returns how many it
// listed.
func removeAll(ctx context.Context, s3 *minio.Client, bucket, prefix string) (int, error) {
	var listErr error
	listed := 0
	objects := func(yield func(minio.ObjectInfo) bool) {
		for obj := range s3.ListObjectsIter(ctx, bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
			if obj.Err != nil {
				listErr = obj.Err
				return
			}
			listed++
			if !yield(obj) {
				return
			}
		}
	}
	results, err := s3.RemoveObjectsWithIter(ctx, bucket, objects, minio.RemoveObjectsOptions{})
	if err != nil {
		return 0, s3Error("remove", "s3://"+bucket+"/"+prefix, err)
	}
	for r := range results {
		if r.Err != nil {
			return listed, fmt.Errorf("remove s3://%s/%s: %w", bucket, r.ObjectName, r.Err)
		}
	}
	if listErr != nil {
		return listed, s3Error("remove", "s3://"+bucket+"/"+prefix, listErr)
	}
	return listed, nil
}

// MaxShards bounds --shards: the shard number is a two- to
// four-digit bucket in the output path.
const MaxShards = 4096

// checkRules rejects rules no retry can use.
func checkRules(r *session.Rules) error {
	if err := r.Validate(); err != nil {
		return store.BadInput("backfill rules", err)
	}
	return nil
}
