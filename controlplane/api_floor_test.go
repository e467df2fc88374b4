package controlplane

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// fakeFloor records the requests asked of it and answers with err.
type fakeFloor struct {
	state FloorState
	err   error
	got   []FloorRequest
}

func (f *fakeFloor) Control(conferenceID string, req FloorRequest) error {
	f.got = append(f.got, req)
	return f.err
}

func (f *fakeFloor) Floor(conferenceID string) (FloorState, error) { return f.state, nil }

// TestFloorAPI: each floor route asks the live conferences for its action,
// answers with the floor state in the JSON the API has always returned
// (openapi.json's Floor), and turns each refusal into its HTTP status with
// the reason as the error code.
func TestFloorAPI(t *testing.T) {
	f := newLinksFixture(t)
	floor := &fakeFloor{state: FloorState{
		State: StateLive, Holder: "ward-001", HolderName: "Phường Một", Unmuted: []string{"ward-001"},
		Locked: true, Hands: []string{"ward-002"}, Screen: "screen-1", Speaker: "ward-001",
	}}
	api := NewAPI(f.st, func(string) map[string]string { return nil }, discardLogger())
	api.SetFloor(floor)
	mux := http.NewServeMux()
	api.Register(mux)
	do := func(method, path, body string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, "https://cb.example/api/conferences/c1"+path, strings.NewReader(body))
		req.Header.Set("Origin", "https://cb.example")
		f.creds["host link"](req)
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, req)
		return rec
	}
	const wantFloor = `{"state":"live","holder":"ward-001","holderName":"Phường Một","unmuted":["ward-001"],` +
		`"locked":true,"hands":["ward-002"],"screen":"screen-1","speaker":"ward-001","recording":false}`

	if rec := do("GET", "/floor", ""); rec.Code != 200 || strings.TrimSpace(rec.Body.String()) != wantFloor {
		t.Errorf("GET floor: %d %s, want 200 %s", rec.Code, rec.Body, wantFloor)
	}
	for _, rt := range []struct {
		method, path, body string
		want               FloorRequest
	}{
		{"POST", "/floor", `{"bridge":"ward-002"}`, FloorRequest{Action: ActionGiveFloor, Bridge: "ward-002"}},
		{"DELETE", "/floor", "", FloorRequest{Action: ActionTakeFloor}},
		{"POST", "/bridges/ward-001/mute", "", FloorRequest{Action: ActionMute, Bridge: "ward-001"}},
		{"DELETE", "/bridges/ward-001/mute", "", FloorRequest{Action: ActionUnmute, Bridge: "ward-001"}},
		{"POST", "/mute-all", "", FloorRequest{Action: ActionMuteAll}},
		{"POST", "/lock", "", FloorRequest{Action: ActionLock}},
		{"DELETE", "/lock", "", FloorRequest{Action: ActionUnlock}},
		{"DELETE", "/hands/ward-002", "", FloorRequest{Action: ActionLowerHand, Bridge: "ward-002"}},
		{"POST", "/recording", "", FloorRequest{Action: ActionRecord}},
		{"DELETE", "/recording", "", FloorRequest{Action: ActionStopRecord}},
	} {
		rt.want.By = "host link c1" // the caller, in the audit log's words
		floor.got = nil
		rec := do(rt.method, rt.path, rt.body)
		if rec.Code != 200 || strings.TrimSpace(rec.Body.String()) != wantFloor {
			t.Errorf("%s %s: %d %s, want 200 and the floor state", rt.method, rt.path, rec.Code, rec.Body)
		}
		if len(floor.got) != 1 || floor.got[0] != rt.want {
			t.Errorf("%s %s asked %+v, want %+v", rt.method, rt.path, floor.got, rt.want)
		}
	}

	for _, tc := range []struct {
		err  error
		want int
		code string
	}{
		{&FloorRefusal{Reason: RefusedUnknownBridge, Message: "no such bridge"}, 404, "unknown_bridge"},
		{&FloorRefusal{Reason: RefusedBadAction, Message: "track ID too long"}, 400, "bad_message"},
		{&FloorRefusal{Reason: RefusedForbidden, Message: "your role may not"}, 403, "forbidden"},
		{&FloorRefusal{Reason: RefusedNoFloor, Message: "not without the floor"}, 409, "no_floor"},
		{&FloorRefusal{Reason: RefusedEnded, Message: "the conference has ended"}, 409, "conference_ended"},
		{&FloorRefusal{Reason: RefusedBadState, Message: "ended conferences stay ended"}, 409, "bad_state"},
		{errors.New("the store is gone"), 500, "internal"},
	} {
		floor.err = tc.err
		rec := do("POST", "/mute-all", "")
		var e apiError
		if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || rec.Code != tc.want || e.Code != tc.code {
			t.Errorf("refused with %v: %d %s, want %d %q", tc.err, rec.Code, rec.Body, tc.want, tc.code)
		}
		var refusal *FloorRefusal
		if errors.As(tc.err, &refusal) && e.Message != refusal.Message {
			t.Errorf("refused with %v: message %q, want the refusal's", tc.err, e.Message)
		}
	}
}
