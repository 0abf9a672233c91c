package activities

import (
	"context"

	"github.com/sessionflow/sessionflow/backfill"
)

// The backfill's steps, as BackfillWorkflow runs them; package backfill
// documents what each does. Each reads and writes the buckets its input
// names, with a.S3.

// PrepareBackfill lists the inputs into the manifest (backfill.Prepare).
func (a *Activities) PrepareBackfill(ctx context.Context, in backfill.PrepareInput) (backfill.Manifest, error) {
	return backfill.Prepare(ctx, a.S3, in)
}

// RouteBackfillInput routes one input's events into shards (backfill.Route).
func (a *Activities) RouteBackfillInput(ctx context.Context, in backfill.RouteInput) (backfill.Routed, error) {
	return backfill.Route(ctx, a.S3, in)
}

// SessionizeBackfillShard sessionizes one shard and writes its sessions
// (backfill.SessionizeShard).
func (a *Activities) SessionizeBackfillShard(ctx context.Context, in backfill.ShardInput) (backfill.ShardResult, error) {
	return backfill.SessionizeShard(ctx, a.S3, in)
}

// CleanupBackfill deletes the intermediate objects (backfill.Cleanup).
func (a *Activities) CleanupBackfill(ctx context.Context, in backfill.CleanupInput) (int, error) {
	return backfill.Cleanup(ctx, a.S3, in)
}
