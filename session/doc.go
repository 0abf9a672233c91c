// Package session holds Sessionflow's rules engine: event decoding, the
// session rules of the built-in profiles, and the state machine that turns a
// key's events into session records.
//
// It is pure Go with no Temporal or I/O imports so that the durable
// workflows, the backfill and the local `starter sessionize` all run the very
// same code: one implementation of the rules, and therefore one result for
// the same events.
//
// The contract (docs/DESIGN.md §3) in short: per key, events are applied in
// event-time order (ties keep arrival order); an event joins the open session
// iff its time is at or before every deadline of that session; a session
// closes when an event beyond a deadline arrives or when the watermark passes
// its earliest deadline. A Tracker applies only events strictly below the
// watermark, so out-of-order arrival above the watermark cannot change a
// result.
package session
