package session

import (
	"bytes"
	"encoding/json"
	"math"
	"testing"
)

func marshalNoHTML(t testing.TB, r *Record) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(r); err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

func TestAppendJSONMatchesEncodingJSON(t *testing.T) {
	click := func(key string, pages []string) Record {
		return Record{SessionID: SessionID(key, t0, 0), Key: key, Pipeline: "web", Profile: "clickstream", Start: t0,
			End: t0 + 5, DurationMs: 5, EventCount: 2, CloseReason: ReasonInactivity,
			ClickstreamAttrs: &ClickstreamAttrs{PagesVisited: pages}}
	}
	charge := func(soc float64) Record {
		return Record{SessionID: "d/1", Key: "d", Profile: "charging", Start: 1, End: 2, DurationMs: 1, EventCount: 1,
			CloseReason: ReasonBreak, ClosedAtMs: 1700000000000,
			ChargingAttrs: &ChargingAttrs{SocStart: soc, SocEnd: -soc, BreakCount: 2, BreakMs: 300000, Status: StatusValid}}
	}
	cases := []Record{
		click("user-1", []string{"home", "cart"}),
		click("ünïcødé 🚀", []string{}),
		click("quote\"back\\slash<html>&", nil),
		click("ctl\x00\x01\b\f\n\r\t\x1f", []string{"\u2028\u2029"}),
		click("bad\xffutf8", []string{"\xc3"}),
		charge(82), charge(82.5), charge(0), charge(1e-7), charge(1e21), charge(123456789.125), charge(math.NaN()),
		{SessionID: "o/1", Key: "o", Profile: "openclose", CloseReason: ReasonEndMarker},
	}
	for _, r := range cases {
		got := r.AppendJSON(nil)
		if math.IsNaN(r.socStart()) {
			if !bytes.Contains(got, []byte(`"soc_start":null`)) {
				t.Errorf("NaN: %s", got)
			}
			continue
		}
		if want := marshalNoHTML(t, &r); !bytes.Equal(got, want) {
			t.Errorf("AppendJSON\n got %s\nwant %s", got, want)
		}
	}
}

func (r *Record) socStart() float64 {
	if r.ChargingAttrs == nil {
		return 0
	}
	return r.SocStart
}

func FuzzAppendJSON(f *testing.F) {
	f.Add("user-1", "home", 82.5, int64(5))
	f.Add("\u2028\"", "\xff", 1e-9, int64(-1))
	f.Fuzz(func(t *testing.T, key, page string, soc float64, n int64) {
		if math.IsNaN(soc) || math.IsInf(soc, 0) {
			return
		}
		recs := []Record{
			{SessionID: key + "/1", Key: key, Profile: "clickstream", EventCount: n, ClickstreamAttrs: &ClickstreamAttrs{PagesVisited: []string{page, key}}},
			{SessionID: key, Key: page, Profile: "charging", ClosedAtMs: n, ChargingAttrs: &ChargingAttrs{SocStart: soc, SocEnd: soc / 3, Status: page}},
		}
		for _, r := range recs {
			if got, want := r.AppendJSON(nil), marshalNoHTML(t, &r); !bytes.Equal(got, want) {
				t.Errorf("AppendJSON\n got %s\nwant %s", got, want)
			}
		}
	})
}
