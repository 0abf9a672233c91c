// Package activities holds Sessionflow's Temporal activities: writing
// session records and late events as Parquet (thin wrappers of package
// store), the backfill's steps, and sending notifications.
package activities

import (
	"github.com/IBM/sarama"
	"github.com/minio/minio-go/v7"

	"github.com/sessionflow/sessionflow/session"
)

// Activities holds the clients the activities use. Register one value with
// the worker (`w.RegisterActivity(&Activities{...})`) and call its methods
// from workflows as `var a *Activities; workflow.ExecuteActivity(ctx, a.WriteParquet, in)`.
// It is safe for concurrent use once built.
type Activities struct {
	// S3 and Bucket are where Parquet goes.
	S3     *minio.Client
	Bucket string
	// Webhook, if set, receives notifications as HTTP POSTs.
	Webhook *Webhook
	// Kafka, if set, receives notifications on NotifyTopic.
	Kafka       sarama.SyncProducer
	NotifyTopic string
}

// Notification kinds.
const (
	KindSessionClosed = "session_closed"
	KindExpiryWarning = "expiry_warning"
	KindBreakStarted  = "break_started"
)

// Notification is what Notify sends: a closed session, a session about to
// reach its maximum duration, or a charging break that began.
type Notification struct {
	Kind      string `json:"kind"`
	Pipeline  string `json:"pipeline"`
	Key       string `json:"key"`
	SessionID string `json:"session_id"`
	// At is the event time the notice is about: the close, the expiry, or
	// the break's start, in epoch ms.
	At int64 `json:"at_ms"`
	// Session is the closed record, or the open session so far.
	Session session.Record `json:"session"`
}

// IdempotencyKey identifies a notification across retries:
// "<session_id>:<kind>", plus the break start for break_started since a
// session can have several breaks.
func (n Notification) IdempotencyKey() string {
	if n.Kind == KindBreakStarted {
		return n.SessionID + ":" + n.Kind + ":" + itoa(n.At)
	}
	return n.SessionID + ":" + n.Kind
}
