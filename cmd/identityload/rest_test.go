package main

import (
	"encoding/json"
	"testing"
)

// The REST client's shortcuts read and write what encoding/json does.
func TestRESTClientJSONShortcuts(t *testing.T) {
	t.Parallel()
	for _, rt := range []string{"", "v1.abc-_DEF", `with "quote"`, `back\slash`, "ctl\n", "é"} {
		var got, want map[string]string
		if err := json.Unmarshal(refreshBody(nil, rt), &got); err != nil {
			t.Fatalf("refreshBody(%q) = %s: %v", rt, refreshBody(nil, rt), err)
		}
		_ = json.Unmarshal(mustJSON(map[string]string{"refresh_token": rt}), &want)
		if got["refresh_token"] != want["refresh_token"] || len(got) != 1 {
			t.Errorf("refreshBody(%q) reads as %q", rt, got)
		}
	}
	for _, body := range []string{
		`{"access_token":"a.b.c","token_type":"Bearer","expires_in":900,"access_token_expires_at":"2026-12-03T15:00:00Z","refresh_token":"v1.xyz","refresh_token_expires_at":null,"session_id":"s"}`,
		`{"access_token": "a.b.c", "refresh_token": "v1.xyz"}`,
		`{"refresh_token":"v1.x\"y","access_token":"a\\b"}`,
		`{"access_token":"a.b.c","refresh_token":""}`,
		`{"access_token":"a.b.c"}`,
	} {
		var got, want restTokenPair
		err := got.decode([]byte(body))
		wantErr := json.Unmarshal([]byte(body), &want)
		if (err != nil) != (wantErr != nil) || got != want {
			t.Errorf("decode(%s) = %+v, %v; encoding/json: %+v, %v", body, got, err, want, wantErr)
		}
	}
	if err := new(restTokenPair).decode([]byte(`{"access_token":"a","refresh_token":`)); err == nil {
		t.Error("decode of cut-off JSON: no error")
	}
}
