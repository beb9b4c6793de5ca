package tokencheck

import (
	"crypto/sha256"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/identityd/identity/token"
)

// Key is the SHA-256 of a token: the cache never holds a usable bearer
// token, only what identifies one.
type Key [sha256.Size]byte

// KeyOf hashes raw in place: a []byte(raw) conversion would copy the token
// to the heap on every call. Sum256 neither keeps nor modifies its input.
func KeyOf(raw string) Key {
	return sha256.Sum256(unsafe.Slice(unsafe.StringData(raw), len(raw)))
}

// Cache is a bounded map of verified tokens. A nil *Cache is a valid,
// always-empty cache, so a verifier without one needs no special case.
type Cache struct {
	mu     sync.RWMutex
	m      map[Key]cacheEntry
	max    int
	maxAge time.Duration
	// epoch counts Clear calls: a verification that began before a Clear
	// (say, with a key since withdrawn) must not put its result after it.
	epoch uint64
	// hits and misses count Get's answers, for the owner's metrics
	// (Stats): the package itself exports nothing to a metrics system.
	hits, misses atomic.Uint64
}

type cacheEntry struct {
	claims *token.Claims
	until  int64 // unix nanoseconds; the entry is dead from then on
}

// NewCache returns a cache of up to size tokens, each kept at most maxAge
// (0: until the token's exp); nil (no cache) for size <= 0.
func NewCache(size int, maxAge time.Duration) *Cache {
	if size <= 0 {
		return nil
	}
	return &Cache{m: make(map[Key]cacheEntry, min(size, 1024)), max: size, maxAge: maxAge}
}

// Get returns the claims cached under k, if alive at now.
func (c *Cache) Get(k Key, now time.Time) (*token.Claims, bool) {
	if c == nil {
		return nil, false
	}
	c.mu.RLock()
	e, ok := c.m[k]
	c.mu.RUnlock()
	if !ok || now.UnixNano() >= e.until {
		c.misses.Add(1)
		return nil, false
	}
	c.hits.Add(1)
	return e.claims, true
}

// Stats returns how many Gets found a live entry (hits) and how many did
// not (misses) since the cache was made; Clear does not reset them. A nil
// cache has none.
func (c *Cache) Stats() (hits, misses uint64) {
	if c == nil {
		return 0, 0
	}
	return c.hits.Load(), c.misses.Load()
}

// Epoch is the number of Clear calls so far; pass it to Put.
func (c *Cache) Epoch() uint64 {
	if c == nil {
		return 0
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.epoch
}

// Put remembers claims until their exp (or now+maxAge if sooner), unless
// the cache was cleared since epoch was read. An entry never outlives its
// token: after exp the token is verified again, which says TOKEN_EXPIRED
// (or, within the leeway, accepts it once more).
func (c *Cache) Put(k Key, cl *token.Claims, now time.Time, epoch uint64) {
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
	if c.epoch != epoch {
		return
	}
	if len(c.m) >= c.max {
		c.evictLocked(now.UnixNano())
	}
	c.m[k] = cacheEntry{claims: cl, until: until.UnixNano()}
}

// evictLocked frees at least an eighth of the cache: dead entries first,
// then arbitrary ones (map order is random). Cheap and bounded; a wrongly
// evicted entry costs one signature check or one Verify call.
func (c *Cache) evictLocked(now int64) {
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

// Remove forgets k.
func (c *Cache) Remove(k Key) {
	if c == nil {
		return
	}
	c.mu.Lock()
	delete(c.m, k)
	c.mu.Unlock()
}

// Clear forgets everything, and every Put of a verification that began
// before.
func (c *Cache) Clear() {
	if c == nil {
		return
	}
	c.mu.Lock()
	clear(c.m)
	c.epoch++
	c.mu.Unlock()
}

// Purge drops the entries dead at now.
func (c *Cache) Purge(now time.Time) {
	if c == nil {
		return
	}
	n := now.UnixNano()
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, e := range c.m {
		if e.until <= n {
			delete(c.m, k)
		}
	}
}

// Len is the number of entries, dead ones included.
func (c *Cache) Len() int {
	if c == nil {
		return 0
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.m)
}
