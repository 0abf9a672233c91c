// Package store is Sessionflow's output in S3-compatible storage: session
// records and late events as Parquet objects under a pipeline's prefix.
// It owns their columns, the encoding both ways and the object layout and
// names, so that the streaming sinks, the ingester, the backfill and the
// tools that read results back cannot disagree about any of them:
//
//	<prefix>/sessions/session_date=YYYY-MM-DD/bucket=NN/<sink>-<seq>.parquet   WriteSessions, ReadSessions
//	<prefix>/late_events/event_date=YYYY-MM-DD/<writer>-<seq>.parquet          WriteLate, ReadLate
//
// The writes are plain functions of an S3 client, not activities: the
// activities package wraps them for the workflows, and the ingester calls
// WriteLate directly. Their errors are already classified for Temporal's
// retry policies (see ErrTypeBadInput), since every caller is, or reports
// to, an activity.
package store
