package controlplane

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// fakeMinutes records the renders asked of it; a range outside
// [recFrom, recTo) is refused as the server refuses it.
type fakeMinutes struct {
	recFrom, recTo time.Time
	got            []MinutesRange
}

func (f *fakeMinutes) RecordingStatus(string) (RecordingStatus, error) { return RecordingStatus{}, nil }
func (f *fakeMinutes) CancelMinutes(string) (MinutesJob, error)        { return MinutesJob{}, ErrNoMinutesJob }
func (f *fakeMinutes) RenderMinutes(id string, r MinutesRange) (MinutesJob, error) {
	if !r.Whole() && (!r.From.Before(f.recTo) || !r.To.After(f.recFrom)) {
		return MinutesJob{}, fmt.Errorf("%w: the recording runs from %s to %s", ErrRangeNotRecorded, f.recFrom.Format(time.RFC3339), f.recTo.Format(time.RFC3339))
	}
	f.got = append(f.got, r)
	return MinutesJob{Conference: id, State: "queued", From: r.From, To: r.To}, nil
}

// TestMinutesRangeAPI: POST .../recording/minutes without a body (or
// with {}) renders the whole recording; with {"from", "to"} that range,
// in UTC, the job saying it; a range outside the recording is 409 with
// what the recording covers; a body that is not a range (bad JSON, bad
// times, one end, from not before to, unknown fields, two values) is 400
// with the body's form, and nothing is rendered.
func TestMinutesRangeAPI(t *testing.T) {
	f := newLinksFixture(t)
	day := time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC)
	minutes := &fakeMinutes{recFrom: day, recTo: day.Add(time.Hour)}
	api := NewAPI(f.st, func(string) map[string]string { return nil }, discardLogger())
	api.SetMinutes(minutes)
	mux := http.NewServeMux()
	api.Register(mux)
	post := func(body string) *httptest.ResponseRecorder {
		req := httptest.NewRequest("POST", "https://cb.example/api/conferences/c1/recording/minutes", strings.NewReader(body))
		req.Header.Set("Origin", "https://cb.example")
		f.creds["host link"](req)
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, req)
		return rec
	}
	for _, c := range []struct {
		body     string
		from, to time.Time
	}{
		{"", time.Time{}, time.Time{}},
		{"{}", time.Time{}, time.Time{}},
		{`{"from":"2026-12-06T09:05:00Z","to":"2026-12-06T09:10:00Z"}`, day.Add(5 * time.Minute), day.Add(10 * time.Minute)},
		{`{"from":"2026-12-06T16:05:00+07:00","to":"2026-12-06T16:10:00.5+07:00"}`, day.Add(5 * time.Minute), day.Add(10*time.Minute + 500*time.Millisecond)},
	} {
		minutes.got = nil
		rec := post(c.body)
		var j MinutesJob
		if rec.Code != http.StatusAccepted || json.Unmarshal(rec.Body.Bytes(), &j) != nil || !j.From.Equal(c.from) || !j.To.Equal(c.to) {
			t.Errorf("%q: %d %s, want 202 and the job of %v-%v", c.body, rec.Code, rec.Body, c.from, c.to)
		}
		if len(minutes.got) != 1 || minutes.got[0].From != c.from || minutes.got[0].To != c.to {
			t.Errorf("%q: renders asked %+v, want one of %v-%v (UTC)", c.body, minutes.got, c.from, c.to)
		}
		if c.from.IsZero() && strings.Contains(rec.Body.String(), `"from"`) {
			t.Errorf("%q: the whole recording's job says a range: %s", c.body, rec.Body)
		}
	}

	minutes.got = nil
	rec := post(`{"from":"2026-12-06T11:00:00Z","to":"2026-12-06T12:00:00Z"}`)
	if rec.Code != http.StatusConflict || !strings.Contains(rec.Body.String(), "outside the recording") ||
		!strings.Contains(rec.Body.String(), "runs from 2026-12-06T09:00:00Z to 2026-12-06T10:00:00Z") {
		t.Errorf("a range after the recording: %d %s, want 409 saying what is recorded", rec.Code, rec.Body)
	}
	for _, body := range []string{
		`{`,
		`{"from":"yesterday","to":"2026-12-06T09:10:00Z"}`,
		`{"from":"2026-12-06 09:05","to":"2026-12-06T09:10:00Z"}`,
		`{"from":"2026-12-06T09:05:00Z"}`,
		`{"to":"2026-12-06T09:05:00Z"}`,
		`{"from":"2026-12-06T09:10:00Z","to":"2026-12-06T09:10:00Z"}`,
		`{"from":"2026-12-06T09:10:00Z","to":"2026-12-06T09:05:00Z"}`,
		`{"from":"2026-12-06T09:05:00Z","to":"2026-12-06T09:10:00Z","whole":true}`,
		`{"from":"2026-12-06T09:05:00Z","to":"2026-12-06T09:10:00Z"} {}`,
		`["2026-12-06T09:05:00Z","2026-12-06T09:10:00Z"]`,
	} {
		rec := post(body)
		if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "RFC 3339") {
			t.Errorf("%s: %d %s, want 400 with the body's form", body, rec.Code, rec.Body)
		}
	}
	if len(minutes.got) != 0 {
		t.Errorf("renders asked for bad or outside ranges: %+v", minutes.got)
	}
}
