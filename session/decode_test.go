package session

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestDecode(t *testing.T) {
	click := rulesOf(t, Clickstream, func(r *Rules) {
		r.KeyField = "user.id"
		r.PageField = "event_details.event_name"
		r.EndMarker = Marker{"page_name", "logout"}
	})
	charging := rulesOf(t, Charging, nil)
	seconds := rulesOf(t, Clickstream, func(r *Rules) { r.TimeUnit = time.Second; r.KeyField = "user.id" })
	cases := []struct {
		name    string
		rules   *Rules
		line    string
		key     string
		time    int64
		flags   Flags
		page    string
		soc     float64
		wantErr error
	}{
		{name: "epoch ms number", rules: click, line: `{"user":{"id":"u1"},"event_timestamp":1704082500000}`, key: "u1", time: 1704082500000},
		{name: "epoch ms string", rules: click, line: `{"user":{"id":"u1"},"event_timestamp":"1790875556200"}`, key: "u1", time: 1790875556200},
		{name: "fractional ms", rules: click, line: `{"user":{"id":"u1"},"event_timestamp":1704082500000.9}`, key: "u1", time: 1704082500000},
		{name: "RFC 3339", rules: click, line: `{"user":{"id":"u1"},"event_timestamp":"2023-07-23T00:00:00Z"}`, key: "u1", time: 1690070400000},
		{name: "RFC 3339 offset", rules: click, line: `{"user":{"id":"u1"},"event_timestamp":"2023-07-23T02:00:00.250+02:00"}`, key: "u1", time: 1690070400250},
		{name: "ISO-8601 +0000", rules: click, line: `{"user":{"id":"u1"},"event_timestamp":"2016-07-28T04:19:28.000+0000"}`, key: "u1", time: 1469679568000},
		{name: "no zone is UTC", rules: click, line: `{"user":{"id":"u1"},"event_timestamp":"2016-07-28T04:19:28"}`, key: "u1", time: 1469679568000},
		{name: "epoch seconds", rules: seconds, line: `{"user":{"id":"u1"},"event_timestamp":1704082500}`, key: "u1", time: 1704082500000},
		{name: "escaped key", rules: click, line: `{"user":{"id":"u\u00e9\"1"},"event_timestamp":1}`, key: "ué\"1", time: 1},
		{name: "nested page and end marker", rules: click,
			line: `{"user":{"id":"u"},"event_timestamp":5,"page_name":"logout","event_details":{"event_name":"bye"}}`,
			key:  "u", time: 5, flags: FlagEnd, page: "bye"},
		{name: "charging active with soc", rules: charging, line: `{"UIN":"d","time":10,"Charge_status":1,"Soc_percentage":82.5}`,
			key: "d", time: 10, flags: FlagActive | FlagSoC, soc: 82.5},
		{name: "charging status as string and bool", rules: charging, line: `{"UIN":"d","time":10,"Charge_status":"true"}`,
			key: "d", time: 10, flags: FlagActive},
		{name: "charging status 0", rules: charging, line: `{"UIN":"d","time":10,"Charge_status":false,"Soc_percentage":"7"}`,
			key: "d", time: 10, flags: FlagSoC, soc: 7},

		{name: "not JSON", rules: click, line: `hello`, wantErr: ErrNotJSON},
		{name: "truncated", rules: click, line: `{"user":{"id":"u1"},"event_timestamp":1`, wantErr: ErrNotJSON},
		{name: "trailing garbage", rules: click, line: `{"user":{"id":"u1"},"event_timestamp":1} x`, wantErr: ErrNotJSON},
		{name: "array", rules: click, line: `[1,2]`, wantErr: ErrNotJSON},
		{name: "unknown escape", rules: click, line: `{"user":{"id":"u1"},"event_timestamp":1,"page_name":"h\qme"}`, wantErr: ErrNotJSON},
		{name: "hex escape in the key", rules: click, line: `{"user":{"id":"u\x41"},"event_timestamp":1}`, wantErr: ErrNotJSON},
		{name: "missing key", rules: click, line: `{"event_timestamp":1}`, wantErr: ErrMissingKey},
		{name: "empty key", rules: click, line: `{"user":{"id":""},"event_timestamp":1}`, wantErr: ErrMissingKey},
		{name: "numeric key", rules: click, line: `{"user":{"id":7},"event_timestamp":1}`, wantErr: ErrMissingKey},
		{name: "key not UTF-8", rules: click, line: "{\"user\":{\"id\":\"\xff\"},\"event_timestamp\":1}", wantErr: ErrMissingKey},
		{name: "missing time", rules: click, line: `{"user":{"id":"u"}}`, wantErr: ErrBadTime},
		{name: "bad time", rules: click, line: `{"user":{"id":"u"},"event_timestamp":"yesterday"}`, wantErr: ErrBadTime},
		{name: "time is an object", rules: click, line: `{"user":{"id":"u"},"event_timestamp":{}}`, wantErr: ErrBadTime},
		{name: "year 9999", rules: click, line: `{"user":{"id":"u"},"event_timestamp":"9999-12-31T23:59:59Z"}`, wantErr: ErrTimeRange},
		{name: "before 1970", rules: click, line: `{"user":{"id":"u"},"event_timestamp":-5}`, wantErr: ErrTimeRange},
		{name: "huge number", rules: seconds, line: `{"user":{"id":"u"},"event_timestamp":1e300}`, wantErr: ErrTimeRange},
		{name: "missing status", rules: charging, line: `{"UIN":"d","time":10}`, wantErr: ErrBadField},
		{name: "status 2", rules: charging, line: `{"UIN":"d","time":10,"Charge_status":2}`, wantErr: ErrBadField},
		{name: "soc not a number", rules: charging, line: `{"UIN":"d","time":10,"Charge_status":1,"Soc_percentage":"full"}`, wantErr: ErrBadField},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			key, e, err := NewDecoder(c.rules).Decode([]byte(c.line))
			if c.wantErr != nil {
				if !errors.Is(err, c.wantErr) {
					t.Fatalf("err = %v, want %v", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(key) != c.key || e.Time != c.time || e.Flags != c.flags || e.Page != c.page || e.SoC != c.soc {
				t.Errorf("got key %q %+v, want key %q time %d flags %b page %q soc %g", key, e, c.key, c.time, c.flags, c.page, c.soc)
			}
		})
	}
}

func TestDecodeIdentity(t *testing.T) {
	d := NewDecoder(rulesOf(t, Clickstream, nil))
	id := func(line string) uint64 {
		t.Helper()
		_, e, err := d.Decode([]byte(line))
		if err != nil {
			t.Fatal(err)
		}
		return e.ID
	}
	a := id(`{"uuid":"u","event_timestamp":1,"event_id":"abc"}`)
	if a == 0 || a != id(`{"event_id":"abc","uuid":"u","event_timestamp":99}`) {
		t.Error("the same event_id must give the same nonzero identity")
	}
	if a == id(`{"uuid":"u","event_timestamp":1,"event_id":"abd"}`) {
		t.Error("different event ids gave one identity")
	}
	if id(`{"uuid":"u","event_timestamp":1}`) != 0 || id(`{"uuid":"u","event_timestamp":1,"event_id":""}`) != 0 {
		t.Error("an event without an id must have identity 0")
	}
	if id(`{"uuid":"u","event_timestamp":1,"event_id":42}`) == 0 {
		t.Error("a numeric id is an identity too")
	}
	if PositionID("clicks/0/17") == PositionID("clicks/0/18") {
		t.Error("positions must differ")
	}
}

// FuzzDecode checks that no input panics the decoder and that what it
// accepts satisfies the event contract.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"uuid":"u1","event_timestamp":"1790875556200","page_name":"home","event_id":"e"}`,
		`{"uuid":"u1","event_timestamp":"2016-07-28T04:19:28.000+0000"}`,
		`{"uuid":"u1","event_timestamp":1.5e12,"page_name":"logout"}`,
		`{"UIN":"d","time":1715227208337,"Charge_status":"1","Soc_percentage":82}`,
		`{"uuid":{"a":[1,2,{"b":null}]},"event_timestamp":true}`,
		`[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]`, `"\ud800"`, ``, `{`, `nul`,
	} {
		f.Add([]byte(s))
	}
	decoders := []*Decoder{}
	for _, p := range Profiles {
		r, _ := Defaults(p)
		r.EndMarker = Marker{"page_name", "logout"}
		decoders = append(decoders, NewDecoder(&r))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		for _, d := range decoders {
			key, e, err := d.Decode(line)
			if err != nil {
				if !strings.Contains(err.Error(), ":") {
					t.Errorf("error without detail: %v", err)
				}
				continue
			}
			if len(key) == 0 {
				t.Error("accepted an empty key")
			}
			if e.Time < minTime || e.Time >= maxTime {
				t.Errorf("accepted time %d out of range", e.Time)
			}
		}
	})
}
