package ingest

import "sync"

// mailbox carries finished operations back to their claim. Senders never
// block, so a claim that is busy (asking the clock, say) holds up no worker;
// the claim drains it when ready says there is mail.
type mailbox struct {
	mu    sync.Mutex
	box   []opResult
	ready chan struct{} // holds a token while the box may be non-empty
}

func newMailbox() *mailbox { return &mailbox{ready: make(chan struct{}, 1)} }

func (m *mailbox) put(r opResult) {
	m.mu.Lock()
	m.box = append(m.box, r)
	m.mu.Unlock()
	select {
	case m.ready <- struct{}{}:
	default:
	}
}

// take empties the box.
func (m *mailbox) take() []opResult {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := m.box
	m.box = nil
	return out
}

// workQueue runs jobs on a fixed number of workers, in the order they
// came. push never blocks: the memory the queued jobs hold is bounded by
// the ingester's backpressure, not by the queue.
type workQueue struct {
	mu     sync.Mutex
	cond   *sync.Cond
	jobs   []func()
	closed bool
	wg     sync.WaitGroup
}

func newWorkQueue(workers int) *workQueue {
	q := &workQueue{}
	q.cond = sync.NewCond(&q.mu)
	for range workers {
		q.wg.Go(q.work)
	}
	return q
}

func (q *workQueue) push(job func()) {
	q.mu.Lock()
	q.jobs = append(q.jobs, job)
	q.mu.Unlock()
	q.cond.Signal()
}

func (q *workQueue) work() {
	for {
		q.mu.Lock()
		for len(q.jobs) == 0 && !q.closed {
			q.cond.Wait()
		}
		if len(q.jobs) == 0 {
			q.mu.Unlock()
			return
		}
		job := q.jobs[0]
		q.jobs[0] = nil
		q.jobs = q.jobs[1:]
		q.mu.Unlock()
		job()
	}
}

// close lets the workers finish the queued jobs and waits for them.
func (q *workQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.cond.Broadcast()
	q.wg.Wait()
}
