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
