package server_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/identityd/identity/authn"
	"github.com/identityd/identity/internal/testidentityd"
	"github.com/identityd/identity/server"
)

// FuzzGatewayLogin sends any body to POST /v1/login through the real HTTP
// handler of an in-process server (gateway, limits, error handler, the
// gRPC side behind them): whatever the body, the answer is never a 5xx,
// and an error answer has the one error shape with identity's ErrorInfo.
// Seeds beyond these are in testdata/fuzz/FuzzGatewayLogin.
func FuzzGatewayLogin(f *testing.F) {
	s := testidentityd.StartInProcess(f, testidentityd.InProcessConfig(func(c *server.Config) {
		c.MaxBodyBytes = 64 << 10  // small, so the fuzzer reaches the limit too
		c.LoginFailuresPerUser = 0 // every attempt reaches the password check
	}))
	testidentityd.AddUser(f, s.Store, "alice", "down-the-rabbit-hole")
	handler := s.Server.HTTPHandler()
	for _, body := range []string{
		`{"username":"alice","password":"down-the-rabbit-hole"}`,
		`{"username":"alice","password":"wrong"}`,
		`{"username":"alice"}`,
		`{}`, ``, `null`, `[]`, `"x"`, `{"username":1}`, `{"extra":true}`,
		`{"username":"al\u0000ice","password":"x"}`,
		`{"username":"alice","password":"x","username":"bob"}`,
		`{"username":"\ud800","password":"x"}`,
	} {
		f.Add([]byte(body), false)
		f.Add([]byte(body), true)
	}
	f.Fuzz(func(t *testing.T, body []byte, browser bool) {
		req := httptest.NewRequest(http.MethodPost, "/v1/login", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if browser {
			req.Header.Set(server.HeaderClient, server.ClientBrowser)
		}
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("POST /v1/login %q: %d %s", body, rec.Code, rec.Body)
		}
		if rec.Code == http.StatusOK {
			return
		}
		var e struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
			Details []struct {
				Domain string `json:"domain"`
				Reason string `json:"reason"`
			} `json:"details"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Code == 0 || e.Message == "" {
			t.Fatalf("POST /v1/login %q: %d with body %q, not the error shape (%v)", body, rec.Code, rec.Body, err)
		}
		for _, d := range e.Details {
			if d.Domain == authn.Domain && d.Reason != "" {
				return
			}
		}
		t.Fatalf("POST /v1/login %q: %d %s without identity's ErrorInfo", body, rec.Code, rec.Body)
	})
}
