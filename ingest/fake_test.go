package ingest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"

	"github.com/sessionflow/sessionflow/session"
	"github.com/sessionflow/sessionflow/store"
	"github.com/sessionflow/sessionflow/workflows"
)

// fakeTemporal plays Temporal for the ingester: a ClockWorkflow with the
// real one's rules, and per key a session.Tracker fed exactly as a
// SessionWorkflow feeds its own (events, then the batch's watermark, then
// the clock's). It records every event it accepts and every violation of
// the watermark invariant: an event that arrives below the clock's W.
type fakeTemporal struct {
	rules    *session.Rules
	pipeline string

	mu       sync.Mutex
	clock    workflows.ClockState
	trackers map[string]*session.Tracker
	records  []session.Record
	accepted map[uint64]int // event id -> deliveries accepted
	events   int            // events accepted, duplicates included
	signals  int
	below    []string // invariant violations
	updates  []workflows.WatermarkUpdate

	// fail, if set, decides whether a SignalEvents attempt fails (before
	// anything is recorded) and how long it takes.
	fail func(key string, attempt int) (delay time.Duration, err error)
	// onAccept, if set, runs after a batch is accepted (outside the lock).
	onAccept func(key string, b workflows.EventBatch)
	attempts int
}

func newFakeTemporal(rules *session.Rules, pipeline string) *fakeTemporal {
	return &fakeTemporal{rules: rules, pipeline: pipeline, clock: workflows.ClockState{Watermark: session.NoWatermark},
		trackers: map[string]*session.Tracker{}, accepted: map[uint64]int{}}
}

func (f *fakeTemporal) SignalEvents(ctx context.Context, key string, b workflows.EventBatch) error {
	f.mu.Lock()
	f.attempts++
	n := f.attempts
	f.mu.Unlock()
	if f.fail != nil {
		delay, err := f.fail(key, n)
		if delay > 0 {
			select {
			case <-time.After(delay):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if err != nil {
			return err
		}
	}
	f.mu.Lock()
	f.signals++
	tr := f.trackers[key]
	if tr == nil {
		tr = session.NewTracker(f.rules, f.pipeline, key)
		f.trackers[key] = tr
	}
	for _, e := range b.Events {
		f.accepted[e.ID]++
		f.events++
		if e.Time < f.clock.Watermark || e.Time < b.Watermark {
			f.below = append(f.below, fmt.Sprintf("%s: event at %d (offset %d) arrived below W=%d (batch W=%d)",
				key, e.Time, e.Seq, f.clock.Watermark, b.Watermark))
		}
	}
	if late := tr.Add(b.Events...); len(late) > 0 {
		f.below = append(f.below, fmt.Sprintf("%s: %d events late at the tracker", key, len(late)))
	}
	f.records = append(f.records, tr.Advance(max(b.Watermark, f.clock.Watermark))...)
	f.mu.Unlock()
	if f.onAccept != nil {
		f.onAccept(key, b)
	}
	return nil
}

func (f *fakeTemporal) PublishMarks(ctx context.Context, u workflows.WatermarkUpdate) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.updates = append(f.updates, u)
	applyClock(&f.clock, u, f.rules.Lateness.Milliseconds())
	return nil
}

func (f *fakeTemporal) ReadClock(ctx context.Context) (workflows.ClockState, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.clock
	st.Marks = slices.Clone(st.Marks)
	return st, nil
}

// finish ends the input as the clock's EndOfInput does, with the largest
// event time of the input: every tracker finishes at it, and the records are
// returned sorted.
func (f *fakeTemporal) finish(high int64) []session.Record {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := slices.Clone(f.records)
	for _, tr := range f.trackers {
		out = append(out, tr.Finish(high)...)
	}
	sortRecords(out)
	return out
}

func (f *fakeTemporal) state() (w int64, marks []workflows.PartitionMark) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.clock.Watermark, slices.Clone(f.clock.Marks)
}

func (f *fakeTemporal) violations() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.below)
}

func sortRecords(rs []session.Record) {
	slices.SortFunc(rs, func(a, b session.Record) int {
		return cmp.Or(cmp.Compare(a.Key, b.Key), cmp.Compare(a.Start, b.Start))
	})
}

// applyClock is workflows.ClockWorkflow's update rule itself.
func applyClock(s *workflows.ClockState, u workflows.WatermarkUpdate, lateness int64) {
	s.Apply(u, lateness, 0)
}

// fakeLate keeps the late events written.
type fakeLate struct {
	mu     sync.Mutex
	events []store.LateEvent
	writes []store.WriteLateInput
}

var _ LateWriter = (*fakeLate)(nil)

func (l *fakeLate) WriteLate(ctx context.Context, in store.WriteLateInput) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.writes = append(l.writes, in)
	l.events = append(l.events, in.Events...)
	return nil
}

// Written is store.LateWritten over the batches written so far.
func (l *fakeLate) Written(ctx context.Context, prefix, writer, date string, from int64) (map[string]bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	seen := make(map[string]bool)
	for _, in := range l.writes {
		if in.Prefix != prefix || in.Writer != writer || max(in.Seq, in.Last) < from {
			continue
		}
		for _, e := range in.Events {
			if store.Date(e.Event.Time) == date {
				seen[e.Source] = true
			}
		}
	}
	return seen, nil
}

func (l *fakeLate) all() []store.LateEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.events)
}

// mortal stands between one ingester and the world so that a test can kill
// the ingester as a process dies: abruptly, between any two of its steps.
// From kill on its calls to Temporal fail, its Kafka connections are closed
// and no new one is dialled; what it sent before stays sent, nothing after
// reaches Temporal or the brokers. Give it to the ingester as its Signaller
// and, through kafka, as its brokers' dialer.
type mortal struct {
	temporal Signaller
	// diesAfter, if set, is asked after each signal Temporal accepted;
	// true kills the process before it hears that the signal was accepted.
	diesAfter func(key string, b workflows.EventBatch) bool

	dialer net.Dialer
	dead   atomic.Bool
	mu     sync.Mutex // dials and kill, so that kill closes every connection
	conns  []net.Conn
}

// errDead is every call of a killed process.
var errDead = errors.New("the process is dead")

func (m *mortal) SignalEvents(ctx context.Context, key string, b workflows.EventBatch) error {
	if m.dead.Load() {
		return errDead
	}
	if err := m.temporal.SignalEvents(ctx, key, b); err != nil {
		return err
	}
	if m.diesAfter != nil && m.diesAfter(key, b) {
		m.kill()
		return errDead
	}
	return nil
}

func (m *mortal) PublishMarks(ctx context.Context, u workflows.WatermarkUpdate) error {
	if m.dead.Load() {
		return errDead
	}
	return m.temporal.PublishMarks(ctx, u)
}

func (m *mortal) ReadClock(ctx context.Context) (workflows.ClockState, error) {
	if m.dead.Load() {
		return workflows.ClockState{}, errDead
	}
	return m.temporal.ReadClock(ctx)
}

// Dial is sarama's dialer (Net.Proxy.Dialer) for every broker connection.
func (m *mortal) Dial(network, addr string) (net.Conn, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.dead.Load() {
		return nil, fmt.Errorf("dial %s: %w", addr, errDead)
	}
	c, err := m.dialer.Dial(network, addr)
	if err != nil {
		return nil, err
	}
	m.conns = append(m.conns, c)
	return c, nil
}

// kafka makes c dial the brokers through m.
func (m *mortal) kafka(c *sarama.Config) *sarama.Config {
	c.Net.Proxy.Enable, c.Net.Proxy.Dialer = true, m
	return c
}

// kill is the process's death. Temporal hears nothing more from it first,
// then the brokers: whatever it commits to Kafka until its connections are
// closed, it can no longer tell the clock.
func (m *mortal) kill() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.dead.Swap(true) {
		return
	}
	for _, c := range m.conns {
		c.Close()
	}
	m.conns = nil
}
