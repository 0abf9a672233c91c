// Package config reads the pipelines file: one YAML document that declares
// every pipeline a deployment runs (its profile and rule overrides, its
// Kafka topic, its output and its notifications). The worker, the ingester
// and the starter all read the same file, so a pipeline means the same
// thing to each of them.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"regexp"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/sessionflow/sessionflow/session"
	"github.com/sessionflow/sessionflow/workflows"
)

// File is a pipelines file.
type File struct {
	Pipelines []Pipeline `yaml:"pipelines"`
}

// Pipeline declares one pipeline. Only Name, Profile and Topic are
// required; every rule defaults to the profile's.
type Pipeline struct {
	Name    string           `yaml:"name"`
	Profile session.Profile  `yaml:"profile"`
	Topic   string           `yaml:"topic"`
	Rules   Rules            `yaml:"rules"`
	Output  Output           `yaml:"output"`
	Notify  workflows.Notify `yaml:"notify"`
	// MaxWait bounds a waiting session's sleep between clock checks (default 1m).
	MaxWait time.Duration `yaml:"max_wait"`
	// MaxHold is the longest the ingester holds an event before it signals
	// it: it wins over the worker's --max-hold; absent or 0, the hold is
	// ingest.DefaultMaxHold of the rules (a quarter of the gap, 1s..1m).
	MaxHold time.Duration `yaml:"max_hold"`
	// StartDelay is how long a new session waits for its first workflow
	// task, gathering the batches of its first burst into it: it wins over
	// the worker's --start-delay; 0 starts sessions at once; absent, it is
	// ingest.DefaultStartDelay (twice the hold, within half the time to the
	// first thing a session can have due).
	StartDelay *time.Duration `yaml:"start_delay"`
}

// Rules override a profile's defaults. An absent or empty field keeps the
// default; a duration given, 0 included, replaces it (lateness: 0 is a
// pipeline that tolerates no disorder, max_duration: 0 one with no maximum).
type Rules struct {
	KeyField       string         `yaml:"key_field"`
	TimeField      string         `yaml:"time_field"`
	IDField        string         `yaml:"id_field"`
	PageField      string         `yaml:"page_field"`
	StatusField    string         `yaml:"status_field"`
	SoCField       string         `yaml:"soc_field"`
	TimeUnit       string         `yaml:"time_unit"` // s, ms, us, ns
	StartMarker    string         `yaml:"start_marker"`
	EndMarker      string         `yaml:"end_marker"`
	Gap            *time.Duration `yaml:"gap"`
	MaxDuration    *time.Duration `yaml:"max_duration"`
	BreakTolerance *time.Duration `yaml:"break_tolerance"`
	MinDuration    *time.Duration `yaml:"min_duration"`
	Lateness       *time.Duration `yaml:"lateness"`
	ExpiryWarning  *time.Duration `yaml:"expiry_warning"`
}

// Output says where a pipeline's Parquet goes and how it is batched.
type Output struct {
	Prefix  string               `yaml:"prefix"`  // default: the pipeline name
	Buckets int                  `yaml:"buckets"` // sink workflows, default 4
	Flush   workflows.SinkLimits `yaml:"flush"`
}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// Load reads and validates a pipelines file.
func Load(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read pipelines: %w", err)
	}
	f, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}

// Parse decodes and validates a pipelines document. Unknown keys are
// errors: a misspelt rule must not silently keep its default.
func Parse(data []byte) (*File, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var f File
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("parse pipelines: %w", err)
	}
	if len(f.Pipelines) == 0 {
		return nil, errors.New("no pipelines declared (want a top-level 'pipelines:' list)")
	}
	seen := map[string]bool{}
	var errs []error
	for i, p := range f.Pipelines {
		if !nameRE.MatchString(p.Name) {
			errs = append(errs, fmt.Errorf("pipeline %d: name %q: want lower-case letters, digits, - and _", i+1, p.Name))
		} else if seen[p.Name] {
			errs = append(errs, fmt.Errorf("pipeline %q declared twice", p.Name))
		}
		seen[p.Name] = true
		if _, err := p.Workflow(); err != nil {
			errs = append(errs, fmt.Errorf("pipeline %q: %w", p.Name, err))
		}
		if p.MaxHold < 0 {
			errs = append(errs, fmt.Errorf("pipeline %q: max_hold %v: want a positive duration, or 0 for the default", p.Name, p.MaxHold))
		}
		if p.StartDelay != nil && *p.StartDelay < 0 {
			errs = append(errs, fmt.Errorf("pipeline %q: start_delay %v: want a positive duration, or 0 to start sessions at once", p.Name, *p.StartDelay))
		}
	}
	return &f, errors.Join(errs...)
}

// Find returns the named pipeline.
func (f *File) Find(name string) (Pipeline, error) {
	for _, p := range f.Pipelines {
		if p.Name == name {
			return p, nil
		}
	}
	return Pipeline{}, fmt.Errorf("no pipeline %q in the pipelines file", name)
}

// SessionRules returns the profile's rules with the pipeline's overrides.
func (p Pipeline) SessionRules() (session.Rules, error) {
	r, err := session.Defaults(p.Profile)
	if err != nil {
		return r, err
	}
	o := p.Rules
	for _, s := range []struct {
		v   string
		dst *string
	}{{o.KeyField, &r.KeyField}, {o.TimeField, &r.TimeField}, {o.IDField, &r.IDField},
		{o.PageField, &r.PageField}, {o.StatusField, &r.StatusField}, {o.SoCField, &r.SoCField}} {
		if s.v != "" {
			*s.dst = s.v
		}
	}
	for _, d := range []struct {
		v   *time.Duration
		dst *time.Duration
	}{{o.Gap, &r.Gap}, {o.MaxDuration, &r.MaxDuration}, {o.BreakTolerance, &r.BreakTolerance},
		{o.MinDuration, &r.MinDuration}, {o.Lateness, &r.Lateness}, {o.ExpiryWarning, &r.ExpiryWarning}} {
		if d.v != nil {
			*d.dst = *d.v
		}
	}
	if o.TimeUnit != "" {
		unit, ok := map[string]time.Duration{"s": time.Second, "ms": time.Millisecond, "us": time.Microsecond, "ns": time.Nanosecond}[o.TimeUnit]
		if !ok {
			return r, fmt.Errorf("time_unit %q: want s, ms, us or ns", o.TimeUnit)
		}
		r.TimeUnit = unit
	}
	for _, m := range []struct {
		v   string
		dst *session.Marker
	}{{o.StartMarker, &r.StartMarker}, {o.EndMarker, &r.EndMarker}} {
		if m.v != "" {
			mk, err := session.ParseMarker(m.v)
			if err != nil {
				return r, err
			}
			*m.dst = mk
		}
	}
	return r, r.Validate()
}

// Workflow returns the pipeline as its workflows carry it.
func (p Pipeline) Workflow() (workflows.Pipeline, error) {
	r, err := p.SessionRules()
	if err != nil {
		return workflows.Pipeline{}, err
	}
	if p.Output.Buckets < 0 || p.Output.Buckets > 100 {
		return workflows.Pipeline{}, fmt.Errorf("output.buckets %d: want 1 to 100", p.Output.Buckets)
	}
	return workflows.Pipeline{
		Name: p.Name, Rules: r, Prefix: p.Output.Prefix, Buckets: p.Output.Buckets,
		Sink: p.Output.Flush, Notify: p.Notify, MaxWait: p.MaxWait, Visibility: true,
	}, nil
}

// Delay is the start delay the pipeline sets, given the worker's (nil:
// unset): its own start_delay if set, else the worker's. nil leaves it to
// ingest.DefaultStartDelay.
func (p Pipeline) Delay(worker *time.Duration) *time.Duration {
	if p.StartDelay != nil {
		return p.StartDelay
	}
	return worker
}

// Hold is the ingester's max hold for the pipeline given the worker's
// (0: unset): the pipeline's own max_hold if set, else the worker's. 0
// leaves it to the ingester, which derives it from the rules.
func (p Pipeline) Hold(worker time.Duration) time.Duration {
	if p.MaxHold > 0 {
		return p.MaxHold
	}
	return max(worker, 0)
}
