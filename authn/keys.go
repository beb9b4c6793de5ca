package authn

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	identityv1 "github.com/identityd/identity/gen/identity/v1"
	"github.com/identityd/identity/token"
)

// maxJWKSBody bounds a fetched JWKS document (token.ParseJWKS refuses more).
const maxJWKSBody = 1 << 20

// fetchKeys returns identity's published keys.
type fetchKeys func(ctx context.Context) (*token.KeySet, error)

func jwksFetcher(url string, client *http.Client) fetchKeys {
	return func(ctx context.Context) (*token.KeySet, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Accept", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("GET JWKS: %s", resp.Status)
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBody+1))
		if err != nil {
			return nil, fmt.Errorf("GET JWKS: %w", err)
		}
		return token.ParseJWKS(body)
	}
}

func grpcKeysFetcher(conn grpc.ClientConnInterface) fetchKeys {
	client := identityv1.NewIdentityServiceClient(conn)
	return func(ctx context.Context) (*token.KeySet, error) {
		resp, err := client.GetPublicKeys(ctx, &identityv1.GetPublicKeysRequest{})
		if err != nil {
			return nil, err
		}
		jwks := make([]token.JWK, 0, len(resp.GetKeys()))
		for _, k := range resp.GetKeys() {
			jwks = append(jwks, token.JWK{
				Kty: k.GetKty(), Crv: k.GetCrv(), X: k.GetX(), Y: k.GetY(), N: k.GetN(), E: k.GetE(),
				Kid: k.GetKid(), Alg: k.GetAlg(), Use: k.GetUse(),
			})
		}
		return token.KeySetFromJWKs(jwks)
	}
}

// keys is the local verifier's token.KeySource: the last fetched key set,
// swapped atomically, so lookups on the hot path take no lock. Fetches are
// shared: callers that need one while another runs wait for it instead of
// starting their own, and fetches caused by unknown kids are spaced by
// minGap so forged tokens cannot make us hammer identity.
type keys struct {
	fetch    fetchKeys
	timeout  time.Duration
	minGap   time.Duration
	now      func() time.Time
	log      *slog.Logger
	onChange func() // the set lost a key: drop what it vouched for

	cur atomic.Pointer[token.KeySet]

	ctx context.Context // canceled by Close: ends any fetch under way
	wg  *sync.WaitGroup

	mu       sync.Mutex
	closed   bool
	inflight chan struct{} // closed when the running fetch ends; nil if none
	lastMiss time.Time     // start of the last fetch an unknown kid caused
	lastErr  error
	loaded   chan struct{} // closed once a set has been loaded
	loadOnce sync.Once
}

// Key implements token.KeySource.
func (k *keys) Key(kid string) (any, string, bool) {
	s := k.cur.Load()
	if s == nil {
		return nil, "", false
	}
	return s.Key(kid)
}

// refetch starts a fetch, or joins the one under way, and returns a
// channel closed when it ends. Fetches not forced (those an unknown kid
// causes) are spaced by minGap: refetch returns nil when the last one
// started less than that ago.
func (k *keys) refetch(force bool) <-chan struct{} {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.inflight != nil {
		return k.inflight
	}
	if k.closed {
		return nil
	}
	if !force {
		now := k.now()
		if !k.lastMiss.IsZero() && now.Sub(k.lastMiss) < k.minGap {
			return nil
		}
		k.lastMiss = now
	}
	done := make(chan struct{})
	k.inflight = done
	k.wg.Go(func() {
		// The fetch runs on its own context, not a caller's: one caller
		// giving up must not fail the others waiting for it.
		ctx, cancel := context.WithTimeout(k.ctx, k.timeout)
		set, err := k.fetch(ctx)
		cancel()
		if err == nil {
			k.install(set)
		} else if k.ctx.Err() == nil {
			k.log.Warn("authn: fetching the verification keys failed; keeping the current ones", slog.String("error", err.Error()))
		}
		k.mu.Lock()
		k.inflight, k.lastErr = nil, err
		k.mu.Unlock()
		close(done)
	})
	return done
}

func (k *keys) install(set *token.KeySet) {
	old := k.cur.Swap(set)
	k.loadOnce.Do(func() { close(k.loaded) })
	if old == nil {
		return
	}
	for _, pk := range old.Keys() {
		if _, _, ok := set.Key(pk.ID); !ok {
			// A key was withdrawn (retired, or pulled after a leak):
			// tokens it signed must not keep verifying from the cache.
			k.onChange()
			return
		}
	}
}

// close stops new fetches; the caller then cancels k.ctx and waits on k.wg.
func (k *keys) close() {
	k.mu.Lock()
	k.closed = true
	k.mu.Unlock()
}

// learn is called when a token failed to verify against the key set seen
// (the set in use when verification began): if the kid it names was not
// in that set, it fetches the keys again (rate limited, shared with other
// callers) and reports whether kid is known now, so the caller verifies
// once more. unsure reports that the keys could not be fetched (none yet,
// or the last fetch failed): the token may well be signed by a key we
// cannot see, so it must not be called invalid.
func (k *keys) learn(ctx context.Context, kid string, seen *token.KeySet) (known, unsure bool) {
	if kid == "" {
		return false, false
	}
	if seen != nil {
		if _, _, ok := seen.Key(kid); ok {
			return false, false // the key was there: the token is bad
		}
	}
	if _, _, ok := k.Key(kid); ok {
		return true, false // installed meanwhile by another fetch
	}
	if done := k.refetch(false); done != nil {
		select {
		case <-done:
		case <-ctx.Done():
			return false, true
		}
	}
	if _, _, ok := k.Key(kid); ok {
		return true, false
	}
	k.mu.Lock()
	unsure = k.lastErr != nil || k.cur.Load() == nil
	k.mu.Unlock()
	return false, unsure
}

// run refetches the keys every interval (sooner after a failure) until
// ctx is done.
func (k *keys) run(ctx context.Context, interval time.Duration) {
	retry := time.Second
	for {
		wait := interval
		if done := k.refetch(true); done != nil {
			select {
			case <-done:
			case <-ctx.Done():
				return
			}
			k.mu.Lock()
			failed := k.lastErr != nil
			k.mu.Unlock()
			if failed {
				wait, retry = min(retry, interval), min(retry*2, interval)
			} else {
				retry = time.Second
			}
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// kidOf reads the kid from a JWT's header, or "" if there is none. It runs
// only for tokens that failed to verify, to tell an unknown key from any
// other failure (token.Verifier reports both as ErrInvalid).
func kidOf(raw string) string {
	head, _, ok := strings.Cut(raw, ".")
	if !ok || len(head) > 1024 {
		return ""
	}
	b, err := base64.RawURLEncoding.DecodeString(head)
	if err != nil {
		return ""
	}
	var h struct {
		Kid string `json:"kid"`
	}
	if json.Unmarshal(b, &h) != nil {
		return ""
	}
	return h.Kid
}
