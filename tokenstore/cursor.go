package tokenstore

import (
	"context"
	"fmt"
	"strconv"
	"strings"
)

// Revocation cursors are Redis stream ids, "<ms>-<seq>", in both stores:
// ms is the RevokedAt of the event in unix milliseconds (never less than the
// previous event's, so ids increase) and seq counts events within one ms.
// Retention is measured on the same clock: appending an event revoked at t
// trims events with ms < t-retention and remembers the newest id trimmed,
// so a cursor older than that is reported as not ok.
type streamID struct{ ms, seq uint64 }

// CursorOrigin is the cursor before every retained revocation event: a
// process that starts with no cache passes it to Revocations to load the
// whole retained history, and always gets ok = true (events trimmed before
// were past their ForgetAfter, and it has nothing cached to distrust). Any
// other cursor older than the retained history gets ok = false.
const CursorOrigin = "origin"

func parseStreamID(s string) (streamID, bool) {
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		return streamID{}, false
	}
	msPart, err1 := strconv.ParseUint(a, 10, 64)
	seq, err2 := strconv.ParseUint(b, 10, 64)
	if err1 != nil || err2 != nil {
		return streamID{}, false
	}
	return streamID{msPart, seq}, true
}

func (id streamID) String() string {
	return strconv.FormatUint(id.ms, 10) + "-" + strconv.FormatUint(id.seq, 10)
}

func (id streamID) less(o streamID) bool {
	return id.ms < o.ms || id.ms == o.ms && id.seq < o.seq
}

// next is the id of an event revoked at ms after last.
func (id streamID) next(at int64) streamID {
	if at > 0 && uint64(at) > id.ms {
		return streamID{uint64(at), 0}
	}
	return streamID{id.ms, id.seq + 1}
}

// Revocations limits: limit <= 0 means defaultRevocationLimit.
const (
	defaultRevocationLimit = 1000
	maxRevocationLimit     = 10000
)

func clampLimit(limit int) int {
	switch {
	case limit <= 0:
		return defaultRevocationLimit
	case limit > maxRevocationLimit:
		return maxRevocationLimit
	}
	return limit
}

// ctxErr fails a call whose context is already done the way a backend
// timeout would, so callers see one kind of failure from every store.
func ctxErr(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return nil
}

// CursorAfter reports whether revocation cursor a comes after b; false when
// either is not a cursor of an event ("", CursorOrigin, garbage).
func CursorAfter(a, b string) bool {
	x, ok1 := parseStreamID(a)
	y, ok2 := parseStreamID(b)
	return ok1 && ok2 && y.less(x)
}
