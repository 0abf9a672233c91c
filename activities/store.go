package activities

import (
	"context"

	"github.com/sessionflow/sessionflow/store"
)

// WriteParquet writes one flush of a SinkWorkflow (store.WriteSessions).
func (a *Activities) WriteParquet(ctx context.Context, in store.WriteSessionsInput) (store.WriteResult, error) {
	return store.WriteSessions(ctx, a.S3, a.Bucket, in, store.ActivityLog(ctx))
}

// WriteLate writes one batch of a session's late events (store.WriteLate).
func (a *Activities) WriteLate(ctx context.Context, in store.WriteLateInput) (store.WriteResult, error) {
	return store.WriteLate(ctx, a.S3, a.Bucket, in, store.ActivityLog(ctx))
}
