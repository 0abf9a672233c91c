package workflows

import (
	"encoding/json"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/sessionflow/sessionflow/session"
	"github.com/sessionflow/sessionflow/store"
)

// ShardWorkflow owns the open sessions of one shard of a pipeline (unit:
// shard). It applies the ShardBatch signals of many keys to one tracker per
// key (session.Keys: the rules engine sessions use), sleeps on one timer for
// its earliest deadline or its flush, closes sessions as W passes their
// deadlines, writes their records as Parquet itself (bucket=NN of the
// pipeline's layout, NN its shard number), sends their notices in one local
// activity per task, and continues as new with its open state. Its cost in
// workflow tasks follows its signals, wake-ups and flushes, however many
// sessions it holds. It never completes: its flushes and late writes are
// numbered for its whole life, and an idle shard costs nothing.
func ShardWorkflow(ctx workflow.Context, in ShardInput) error {
	r := newShardRun(ctx, in)
	return r.run()
}

// ShardState is what a shard carries across continue-as-new.
type ShardState struct {
	Keys session.KeysState `json:"keys"`
	// Watermark is the best W known, which may be ahead of the keys' (a
	// batch that arrived after the last step).
	Watermark int64   `json:"watermark"`
	Rate      float64 `json:"rate,omitempty"`
	WAtMs     int64   `json:"w_at_ms,omitempty"`
	// Buffer holds closed records not yet written; BufferedAtMs is the
	// workflow time the oldest of them closed.
	Buffer       []session.Record `json:"buffer,omitempty"`
	BufferedAtMs int64            `json:"buffered_at_ms,omitempty"`
	// Seq numbers the shard's Parquet flushes, LateSeq its late writes:
	// with the shard's id they name the objects, so a retried write
	// overwrites its own.
	Seq     int64 `json:"seq"`
	LateSeq int64 `json:"late_seq,omitempty"`
	Rows    int64 `json:"rows"`
	Closed  int64 `json:"closed"`
}

// ShardSummary is the answer to QueryShard.
type ShardSummary struct {
	Pipeline     string `json:"pipeline"`
	Shard        int    `json:"shard"`
	Watermark    int64  `json:"watermark"`
	OpenKeys     int    `json:"open_keys"` // keys with an open session or buffered events
	NextDeadline int64  `json:"next_deadline,omitempty"`
	NextKey      string `json:"next_key,omitempty"`
	Buffered     int    `json:"buffered"` // closed records not yet in Parquet
	Closed       int64  `json:"closed"`   // sessions closed by this shard
	Rows         int64  `json:"rows"`     // rows it wrote
	Flushes      int64  `json:"flushes"`
}

// Limits of a shard run and its state.
const (
	// shardSignalsPerRun bounds a run's history: a batch signal and the
	// task it costs are a few events, a flush a few more.
	shardSignalsPerRun = 500
	// DefaultShardMaxOpen is the keys a shard holds before it says, loudly,
	// to raise shards (Pipeline.ShardMaxOpen).
	DefaultShardMaxOpen = 50_000
	// shardStateWarn is the carried state's size past which a shard says
	// to raise shards; Temporal refuses a payload over 2 MB.
	shardStateWarn = 1 << 20
	shardStateMax  = 2_000_000 - 64<<10
)

type shardRun struct {
	ctx  workflow.Context
	in   ShardInput
	p    Pipeline
	keys *session.Keys
	st   ShardState

	w, wAt  int64
	rate    float64
	final   bool
	signals int
	stalls  int

	late    []store.LateEvent
	notices []workflow.Future // Notify activities, awaited before the run ends
	timer   workflow.Future
	cancel  workflow.CancelFunc
	fireAt  int64 // workflow ms the timer fires
	wait    time.Duration
	loud    bool // this run said the shard is over its limits
	details string
}

func newShardRun(ctx workflow.Context, in ShardInput) *shardRun {
	r := &shardRun{ctx: ctx, in: in, p: in.Pipeline, w: session.NoWatermark}
	r.ctx = workflow.WithActivityOptions(ctx, flushOptions)
	if in.State != nil {
		r.st = *in.State
		in.State = nil
		r.keys = session.RestoreKeys(&r.p.Rules, r.p.Name, r.st.Keys)
		r.w, r.rate, r.wAt = max(r.st.Watermark, r.keys.Watermark()), r.st.Rate, r.st.WAtMs
		r.st.Keys = session.KeysState{}
	} else {
		r.keys = session.NewKeys(&r.p.Rules, r.p.Name)
	}
	r.in = in
	if r.p.Notify.BreakStarted {
		r.keys.TrackBreaks()
	}
	return r
}

func (r *shardRun) run() error {
	if err := workflow.SetQueryHandler(r.ctx, QueryState, r.keyState); err != nil {
		return err
	}
	if err := workflow.SetQueryHandler(r.ctx, QueryShard, r.summary); err != nil {
		return err
	}
	r.showAttrs()
	events := workflow.GetSignalChannel(r.ctx, SignalShardEvents)
	ready := r.keys.Len() > 0 || len(r.st.Buffer) > 0 // a continued run steps first
	for {
		if !ready {
			fired := false
			sel := workflow.NewSelector(r.ctx)
			sel.AddReceive(events, func(c workflow.ReceiveChannel, _ bool) { r.receive(c) })
			if r.timer != nil {
				sel.AddFuture(r.timer, func(workflow.Future) { fired, r.timer = true, nil })
			}
			sel.AddReceive(r.ctx.Done(), func(workflow.ReceiveChannel, bool) {})
			sel.Select(r.ctx)
			if r.ctx.Err() != nil {
				return r.cancelled()
			}
			r.drain(events)
			if fired {
				r.readClock()
			}
		}
		ready = false
		if err := r.step(); err != nil {
			return err
		}
		if r.signals >= shardSignalsPerRun || workflow.GetInfo(r.ctx).GetContinueAsNewSuggested() {
			if next, ok := r.next(events); ok {
				return workflow.NewContinueAsNewError(r.ctx, ShardWorkflow, next)
			}
		}
		r.arm()
	}
}

// cancelled ends a shard an operator cancelled: what it closed is written
// first, with a context the cancellation does not reach; its open sessions
// end with it (restart the pipeline's ingesters to start them again from
// Kafka).
func (r *shardRun) cancelled() error {
	ctx, _ := workflow.NewDisconnectedContext(r.ctx)
	done := r.ctx
	r.ctx = ctx
	if err := r.flush(); err != nil {
		workflow.GetLogger(ctx).Error("flush of a cancelled shard failed", "error", err)
	}
	return done.Err()
}

func (r *shardRun) receive(c workflow.ReceiveChannel) {
	var b ShardBatch
	c.Receive(r.ctx, &b)
	r.add(b)
}

func (r *shardRun) drain(c workflow.ReceiveChannel) {
	for {
		var b ShardBatch
		if !c.ReceiveAsync(&b) {
			return
		}
		r.add(b)
	}
}

// add takes a batch in as a session run takes its EventBatch: the events
// first, then the sender's watermark, which is no later than any of them.
func (r *shardRun) add(b ShardBatch) {
	r.signals++
	for _, ke := range b.Keys {
		for _, e := range r.keys.Add(ke.Key, ke.Events...) {
			r.late = append(r.late, store.LateEvent{Pipeline: r.p.Name, Key: ke.Key, Event: e, Watermark: r.keys.Watermark()})
		}
	}
	if b.AsOfMs > 0 && b.Watermark >= r.w {
		if b.Watermark > r.w {
			r.wAt = b.AsOfMs
		} else {
			r.wAt = max(r.wAt, b.AsOfMs)
		}
	}
	r.w = max(r.w, b.Watermark)
	if b.Rate > 0 {
		r.rate = b.Rate
	}
}

// step applies what W allows: closes, late events, notices, the flush.
func (r *shardRun) step() error {
	var closed []session.Record
	if r.final {
		closed = r.keys.Finish(r.w)
	} else {
		closed = r.keys.Advance(r.w)
	}
	if err := r.writeLate(); err != nil {
		return err
	}
	now := workflow.Now(r.ctx).UnixMilli()
	var out []shardNotice
	for _, b := range r.keys.TakeBreaks() {
		out = append(out, r.breakNotice(b))
	}
	if len(closed) > 0 && len(r.st.Buffer) == 0 {
		r.st.BufferedAtMs = now
	}
	for _, rec := range closed {
		rec.ClosedAtMs = now
		r.st.Buffer = append(r.st.Buffer, rec)
		if r.p.Notify.SessionClosed {
			out = append(out, r.closedNotice(rec))
		}
	}
	r.st.Closed += int64(len(closed))
	r.send(out)
	if r.flushDue(now) {
		if err := r.flush(); err != nil {
			return err
		}
	}
	r.checkLimits()
	r.show()
	return nil
}

// next prepares the run that continues this one: notices settled, the
// buffer written, the batches already delivered taken in. ok is false if
// the state would not fit a payload; the run goes on, loudly.
func (r *shardRun) next(events workflow.ReceiveChannel) (ShardInput, bool) {
	r.awaitNotices()
	if len(r.st.Buffer) > 0 {
		if err := r.flush(); err != nil {
			workflow.GetLogger(r.ctx).Error("flush before continue-as-new failed; continuing this run", "error", err)
			return ShardInput{}, false
		}
	}
	r.drain(events) // nothing blocks between this drain and the end
	st := r.st
	st.Keys, st.Watermark, st.Rate, st.WAtMs = r.keys.State(), r.w, r.rate, r.wAt
	in := r.in
	in.State = &st
	b, err := json.Marshal(in)
	size := len(b)
	if err != nil || size > shardStateMax {
		workflow.GetLogger(r.ctx).Error("shard state too large to continue as new: raise shards",
			"shard", r.in.Shard, "bytes", size, "open_keys", r.keys.Len(), "error", err)
		workflow.GetMetricsHandler(r.ctx).Counter("sessionflow_shard_over_limit").Inc(1)
		return ShardInput{}, false
	}
	if size > shardStateWarn {
		workflow.GetLogger(r.ctx).Warn("shard state is large: raise shards", "shard", r.in.Shard, "bytes", size, "open_keys", r.keys.Len())
		workflow.GetMetricsHandler(r.ctx).Counter("sessionflow_shard_over_limit").Inc(1)
	}
	return in, true
}

// checkLimits says, once a run, that the shard holds more open keys than
// its limit: nothing is dropped, but its state and its tasks grow with
// them, and another shard would share the load.
func (r *shardRun) checkLimits() {
	limit := r.p.ShardMaxOpen
	if limit <= 0 {
		limit = DefaultShardMaxOpen
	}
	if r.loud || r.keys.Len() <= limit {
		return
	}
	r.loud = true
	workflow.GetLogger(r.ctx).Warn("shard over its open-session limit: raise shards",
		"shard", r.in.Shard, "open_keys", r.keys.Len(), "limit", limit)
	workflow.GetMetricsHandler(r.ctx).Counter("sessionflow_shard_over_limit").Inc(1)
}

// keyState answers QueryState for one key.
func (r *shardRun) keyState(key string) (SessionState, error) {
	s := SessionState{Pipeline: r.p.Name, Key: key, Watermark: r.w}
	t, ok := r.keys.Tracker(key)
	if !ok {
		return s, nil
	}
	s.Pending, s.Stats = t.Pending(), t.Stats()
	if rec, deadline, why, open := t.Open(); open {
		s.Session, s.Deadline, s.DeadlineReason = &rec, deadline, why
	}
	return s, nil
}

func (r *shardRun) summary() (ShardSummary, error) {
	s := ShardSummary{Pipeline: r.p.Name, Shard: r.in.Shard, Watermark: r.w, OpenKeys: r.keys.Len(),
		Buffered: len(r.st.Buffer), Closed: r.st.Closed, Rows: r.st.Rows, Flushes: r.st.Seq}
	if at, key, ok := r.keys.NextDeadline(); ok {
		s.NextDeadline, s.NextKey = at, key
	}
	return s, nil
}
