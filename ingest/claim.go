package ingest

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sessionflow/sessionflow/session"
	"github.com/sessionflow/sessionflow/store"
	"github.com/sessionflow/sessionflow/workflows"
)

// claimConsumer reads one partition for one generation. Its loop owns the
// decoder, the offsets, the key buffers and the late and dead-letter
// buffers; the operations it starts (signals, late writes, dead letters)
// report back through its mailbox.
type claimConsumer struct {
	i     *Ingester
	gen   *generation
	claim sarama.ConsumerGroupClaim
	p     int32
	dec   *session.Decoder
	hold  time.Duration // the max hold in effect (Limits.Hold)

	offsets offsetTracker
	batch   *batcher
	late    lateBuffer
	ledger  *lateLedger // set by the first message
	dead    []*sarama.ProducerMessage
	deadOff []int64
	deadAt  time.Time
	deadLen int

	mail       *mailbox
	opCtx      context.Context
	abandon    context.CancelFunc
	inflight   int
	firstEvent bool // the first valid event was read
	paused     bool

	messages prometheus.Counter
	lag      prometheus.Gauge
	pos      []byte // scratch for positions
}

// consume runs one claim to its end.
func (g *generation) consume(claim sarama.ConsumerGroupClaim) error {
	i := g.i
	part := strconv.Itoa(int(claim.Partition()))
	lim := i.lim
	lim.MaxHold = lim.Hold(i.cfg.Pipeline.Rules)
	c := &claimConsumer{
		i: i, gen: g, claim: claim, p: claim.Partition(),
		dec:      session.NewDecoder(&i.cfg.Pipeline.Rules),
		hold:     lim.MaxHold,
		batch:    newBatcher(lim),
		mail:     newMailbox(),
		messages: i.met.m.Messages.WithLabelValues(i.cfg.Pipeline.Name, part),
		lag:      i.met.m.ConsumerLag.WithLabelValues(i.cfg.Pipeline.Name, part),
	}
	// Operations outlive the generation's context (a rebalance cancels it) so
	// that a revoked partition can still drain; abandon stops them.
	c.opCtx, c.abandon = context.WithCancel(context.Background())
	defer c.abandon()
	return c.run()
}

// tick is how often buffers are checked for age: it bounds how late a due
// buffer is noticed, a quarter of the hold at most, and never more than
// 250ms late however long the hold (nor polled more than every 10ms).
func (c *claimConsumer) tick() time.Duration {
	return min(max(c.hold/4, 10*time.Millisecond), 250*time.Millisecond)
}

func (c *claimConsumer) run() error {
	t := time.NewTicker(c.tick())
	defer t.Stop()
	sessDone := c.gen.sess.Context().Done()
	for {
		msgs := c.claim.Messages()
		if c.gen.blocked() {
			if !c.paused {
				c.paused = true
				c.i.met.backpressure.Inc()
			}
			msgs = nil // stop reading; what is buffered goes out now
			c.flushAll()
			c.gen.requestCommit()
		} else {
			c.paused = false
		}
		select {
		case m, ok := <-msgs:
			if !ok {
				return c.drain()
			}
			if err := c.handle(m); err != nil {
				if c.gen.sess.Context().Err() != nil {
					return c.drain() // the generation ended while the clock was asked
				}
				return err
			}
		case <-c.mail.ready:
			c.completeAll()
		case now := <-t.C:
			c.flushDue(now)
		case <-sessDone:
			return c.drain()
		}
	}
}

// handle routes one message: dead letter, late event, or into its key's
// batch.
func (c *claimConsumer) handle(m *sarama.ConsumerMessage) error {
	now := time.Now()
	c.offsets.read(m.Offset)
	if c.ledger == nil {
		c.ledger = newLateLedger(c.i.cfg.Late, prefix(c.i.cfg.Pipeline), c.lateWriter(), m.Offset)
	}
	c.gen.uncommitted.Add(1)
	c.messages.Inc()
	if hw := c.claim.HighWaterMarkOffset(); hw > 0 {
		c.lag.Set(float64(max(hw-m.Offset-1, 0)))
	}
	if len(m.Value) > c.i.lim.MaxValueBytes {
		c.addDeadLetter(m, ReasonTooLarge, fmt.Sprintf("value of %d bytes is over the %d-byte limit", len(m.Value), c.i.lim.MaxValueBytes), now)
		return nil
	}
	key, e, err := c.dec.Decode(m.Value)
	if err != nil {
		c.addDeadLetter(m, reasonOf(err), err.Error(), now)
		return nil
	}
	e.Seq = m.Offset // ties within a key keep Kafka's order
	if e.ID == 0 {
		e.ID = session.PositionID(c.position(m.Offset))
	}
	if !c.firstEvent {
		c.firstEvent = true
		c.i.wm.firstEvent(c.p, e.Time)
	}
	for {
		verdict, thr := c.i.wm.classify(c.p, m.Offset, e.Time, now)
		switch verdict {
		case needWake:
			if err := c.i.wake(c.gen.sess.Context(), c.p, e.Time); err != nil {
				return fmt.Errorf("partition %d: %w", c.p, err)
			}
			continue
		case late:
			c.addLate(m, string(key), e, thr, now)
		case onTime:
			if full := c.batch.add(key, e, m.Offset, now); full != nil {
				c.startSignal(full)
			}
			c.gen.pending.Add(int64(eventBytes(e)))
		}
		return nil
	}
}

// position is "topic/partition/offset", the identity of an event without
// an id field and the source of late events and dead letters.
func (c *claimConsumer) position(off int64) string {
	c.pos = append(c.pos[:0], c.i.cfg.Topic...)
	c.pos = append(c.pos, '/')
	c.pos = strconv.AppendInt(c.pos, int64(c.p), 10)
	c.pos = append(c.pos, '/')
	c.pos = strconv.AppendInt(c.pos, off, 10)
	return string(c.pos)
}

func (c *claimConsumer) addDeadLetter(m *sarama.ConsumerMessage, reason, detail string, now time.Time) {
	c.i.met.invalid(reason).Inc()
	if len(c.dead) == 0 {
		c.deadAt = now
	}
	c.dead = append(c.dead, newDeadLetter(c.i.cfg.DLQTopic, c.i.cfg.Pipeline.Name, m, reason, detail))
	c.deadOff = append(c.deadOff, m.Offset)
	c.deadLen += len(m.Value)
	c.gen.pending.Add(int64(len(m.Value)))
	if len(c.dead) >= 100 || c.deadLen >= 1<<20 {
		c.startDeadLetters()
	}
}

func (c *claimConsumer) addLate(m *sarama.ConsumerMessage, key string, e session.Event, thr int64, now time.Time) {
	c.i.met.late.Inc()
	le := store.LateEvent{
		Pipeline: c.i.cfg.Pipeline.Name, Key: key, Event: e, Watermark: thr,
		Source: c.position(m.Offset), Raw: slices.Clone(m.Value),
	}
	before := c.late.bytes
	c.late.add(le, m.Offset, now)
	c.gen.pending.Add(int64(c.late.bytes - before))
	if len(c.late.events) >= c.i.lim.LateBatch {
		c.startLateWrite()
	}
}

// flushDue sends what was held for the max hold. Late events and dead
// letters wait as long: until they are written their offsets are not
// committed, and the on-time events after them hold the watermark back no
// longer than a held event would.
func (c *claimConsumer) flushDue(now time.Time) {
	for _, kb := range c.batch.due(now) {
		c.startSignal(kb)
	}
	age := c.hold
	if len(c.late.events) > 0 && now.Sub(c.late.created) >= age {
		c.startLateWrite()
	}
	if len(c.dead) > 0 && now.Sub(c.deadAt) >= age {
		c.startDeadLetters()
	}
}

// flushAll sends everything buffered.
func (c *claimConsumer) flushAll() {
	for _, kb := range c.batch.all() {
		c.startSignal(kb)
	}
	if len(c.late.events) > 0 {
		c.startLateWrite()
	}
	if len(c.dead) > 0 {
		c.startDeadLetters()
	}
}

// startSignal queues the SignalWithStart of a key's batch. Its watermark is
// the clock's W as last read, never above the batch's earliest event.
func (c *claimConsumer) startSignal(kb *keyBuffer) {
	c.i.met.batchSize.Observe(float64(len(kb.events)))
	b := workflows.EventBatch{Events: kb.events}
	b.Watermark, b.Rate, b.AsOfMs = c.i.wm.batchWatermark(kb.first)
	r := opResult{kind: opSignal, offsets: kb.offsets, last: kb.last, bytes: int64(kb.bytes)}
	c.inflight++
	ctx := c.opCtx
	c.i.signals.push(func() {
		if r.err = context.Cause(ctx); r.err == nil {
			r.err = c.i.signal(ctx, kb.key, b)
		}
		c.mail.put(r)
	})
}

// lateWriter names the partition's late objects.
func (c *claimConsumer) lateWriter() string {
	return "ingest/" + c.i.cfg.Topic + "/" + strconv.Itoa(int(c.p))
}

func (c *claimConsumer) startLateWrite() {
	lb := c.late.take()
	in := store.WriteLateInput{Prefix: prefix(c.i.cfg.Pipeline), Writer: c.lateWriter(), Events: lb.events}
	r := opResult{kind: opLate, offsets: lb.offsets, bytes: int64(lb.bytes)}
	c.start(r, func(ctx context.Context) error { return c.i.writeLate(ctx, c.ledger, in, lb.offsets) })
}

func (c *claimConsumer) startDeadLetters() {
	msgs := c.dead
	r := opResult{kind: opDeadLetters, offsets: c.deadOff, bytes: int64(c.deadLen)}
	c.dead, c.deadOff, c.deadLen = nil, nil, 0
	c.start(r, func(ctx context.Context) error { return c.i.sendDeadLetters(ctx, msgs) })
}

// start runs op in its own goroutine and reports r back with its outcome.
func (c *claimConsumer) start(r opResult, op func(context.Context) error) {
	c.inflight++
	go func() {
		r.err = op(c.opCtx)
		c.mail.put(r)
	}()
}

func (c *claimConsumer) completeAll() {
	for _, r := range c.mail.take() {
		c.complete(r)
	}
}

// complete acknowledges a finished operation's offsets and marks the
// partition up to the first message not yet acknowledged.
func (c *claimConsumer) complete(r opResult) {
	c.inflight--
	c.gen.pending.Add(-r.bytes)
	if r.err != nil {
		return // abandoned: its offsets stay unacknowledged, never committed
	}
	for _, off := range r.offsets {
		c.offsets.ack(off)
	}
	if r.kind == opSignal {
		c.i.wm.acked(c.p, r.last)
	}
	if next, n, ok := c.offsets.advance(); ok {
		c.gen.sess.MarkOffset(c.i.cfg.Topic, c.p, next, "")
		c.i.wm.marked(c.p, next, n)
	}
}

// drain hands the partition over: everything buffered is sent and waited
// for, up to DrainTimeout; what is not acknowledged by then is abandoned
// uncommitted, to be read again by the partition's next owner.
func (c *claimConsumer) drain() error {
	c.flushAll()
	timeout := time.NewTimer(c.i.lim.DrainTimeout)
	defer timeout.Stop()
	for c.inflight > 0 {
		select {
		case <-c.mail.ready:
			c.completeAll()
		case <-timeout.C:
			c.giveUp()
			return nil
		}
	}
	return nil
}

// giveUp abandons what is still under way.
func (c *claimConsumer) giveUp() {
	n := c.offsets.outstanding()
	if n == 0 && c.inflight == 0 {
		return
	}
	c.abandon()
	c.i.met.abandons.Add(float64(n))
	first, _ := c.offsets.first()
	c.i.log.Warn("partition handed over with unacknowledged messages; its next owner reads them again",
		"partition", c.p, "messages", n, "operations", c.inflight, "from_offset", first)
}

func prefix(p workflows.Pipeline) string {
	if p.Prefix != "" {
		return p.Prefix
	}
	return p.Name
}
