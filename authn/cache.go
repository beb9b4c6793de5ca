package authn

import (
	"crypto/sha256"
	"sync"
	"time"
	"unsafe"
)

// tokenKey is the SHA-256 of a token: the cache never holds a usable
// bearer token, only what identifies one.
type tokenKey [sha256.Size]byte

func keyOf(raw string) tokenKey {
	// Hash the string's bytes in place: a []byte(raw) conversion would
	// copy the token to the heap on every call. Sum256 neither keeps nor
	// modifies its input.
	return sha256.Sum256(unsafe.Slice(unsafe.StringData(raw), len(raw)))
}

// cache is a bounded map of verified tokens. A nil *cache is a valid,
// always-empty cache, so a verifier without one needs no special case.
type cache struct {
	mu     sync.RWMutex
	m      map[tokenKey]cacheEntry
	max    int
	maxAge time.Duration
}

type cacheEntry struct {
	claims *Claims
	until  int64 // unix nanoseconds; the entry is dead from then on
}

// newCache returns nil (no cache) for size <= 0.
func newCache(size int, maxAge time.Duration) *cache {
	if size <= 0 {
		return nil
	}
	return &cache{m: make(map[tokenKey]cacheEntry, min(size, 1024)), max: size, maxAge: maxAge}
}

func (c *cache) get(k tokenKey, now time.Time) (*Claims, bool) {
	if c == nil {
		return nil, false
	}
	c.mu.RLock()
	e, ok := c.m[k]
	c.mu.RUnlock()
	if !ok || now.UnixNano() >= e.until {
		return nil, false
	}
	return e.claims, true
}

// put remembers claims until their exp (or now+maxAge if sooner). An
// entry never outlives its token: after exp the token is verified again,
// which says TOKEN_EXPIRED (or, within the leeway, accepts it once more).
func (c *cache) put(k tokenKey, cl *Claims, now time.Time) {
	if c == nil {
		return
	}
	until := cl.ExpiresAt
	if c.maxAge > 0 && now.Add(c.maxAge).Before(until) {
		until = now.Add(c.maxAge)
	}
	if !now.Before(until) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= c.max {
		c.evictLocked(now.UnixNano())
	}
	c.m[k] = cacheEntry{claims: cl, until: until.UnixNano()}
}

// evictLocked frees at least an eighth of the cache: dead entries first,
// then arbitrary ones (map order is random). Cheap and bounded; a wrongly
// evicted entry costs one signature check or one Verify call.
func (c *cache) evictLocked(now int64) {
	n := max(1, c.max/8)
	for k, e := range c.m {
		if e.until <= now {
			delete(c.m, k)
			n--
		}
	}
	for k := range c.m {
		if n <= 0 {
			break
		}
		delete(c.m, k)
		n--
	}
}

func (c *cache) remove(k tokenKey) {
	if c == nil {
		return
	}
	c.mu.Lock()
	delete(c.m, k)
	c.mu.Unlock()
}

func (c *cache) clear() {
	if c == nil {
		return
	}
	c.mu.Lock()
	clear(c.m)
	c.mu.Unlock()
}

func (c *cache) len() int {
	if c == nil {
		return 0
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.m)
}
