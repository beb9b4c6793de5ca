package token

import (
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// decodeClaimsFast decodes the claims of an access token in the shape
// every issuer of ours writes (Issuer.Issue, and golang-jwt's encoding of
// accessClaims): one JSON object, no whitespace, each known claim at most
// once, strings of printable ASCII without escapes, string arrays, and
// times as plain non-negative integers. It reports false, having written
// nothing into c, for anything else (another key, a repeated key, an
// escape, a fraction, null, whitespace, ...), and the caller then decodes
// with encoding/json (accessClaims.UnmarshalJSON), which gives the same
// claims for every input this accepts (FuzzClaimsFast holds it to that) and
// the contract's answer for every other input.
//
// It exists for the cost of a cache-miss Verify: golang-jwt has already
// run encoding/json's validity scan over the claims, and decoding them
// again through reflection was ~10% of a signature check's CPU.
func decodeClaimsFast(b []byte, c *accessClaims) bool {
	var (
		out  accessClaims
		seen uint16
		d    = claimsDecoder{b: b}
	)
	if !d.byte('{') {
		return false
	}
	if d.peek() == '}' {
		d.i++
	} else {
		for {
			key, ok := d.str()
			if !ok || !d.byte(':') {
				return false
			}
			bit := claimBit(key)
			if bit == 0 || seen&bit != 0 {
				return false
			}
			seen |= bit
			switch bit {
			case bitIss:
				out.Issuer, ok = d.str()
			case bitSub:
				out.Subject, ok = d.str()
			case bitJti:
				out.ID, ok = d.str()
			case bitSid:
				out.SessionID, ok = d.str()
			case bitName:
				out.Username, ok = d.str()
			case bitAud:
				out.Audience, ok = d.audience()
			case bitRoles:
				out.Roles, ok = d.strs()
			case bitExp:
				out.ExpiresAt, ok = d.date()
			case bitNbf:
				out.NotBefore, ok = d.date()
			case bitIat:
				out.IssuedAt, ok = d.date()
			}
			if !ok {
				return false
			}
			if d.peek() == ',' {
				d.i++
				continue
			}
			if !d.byte('}') {
				return false
			}
			break
		}
	}
	if d.i != len(b) {
		return false
	}
	out.maxLifetime = c.maxLifetime
	*c = out
	return true
}

const (
	bitIss uint16 = 1 << iota
	bitSub
	bitAud
	bitExp
	bitNbf
	bitIat
	bitJti
	bitSid
	bitRoles
	bitName
)

// claimBit names the claims decodeClaimsFast knows, by their exact
// (lowercase) names: encoding/json also matches a key in another case, so
// any other spelling is left to it.
func claimBit(key string) uint16 {
	switch key {
	case "iss":
		return bitIss
	case "sub":
		return bitSub
	case "aud":
		return bitAud
	case "exp":
		return bitExp
	case "nbf":
		return bitNbf
	case "iat":
		return bitIat
	case "jti":
		return bitJti
	case "sid":
		return bitSid
	case "roles":
		return bitRoles
	case "preferred_username":
		return bitName
	}
	return 0
}

type claimsDecoder struct {
	b []byte
	i int
}

func (d *claimsDecoder) peek() byte {
	if d.i < len(d.b) {
		return d.b[d.i]
	}
	return 0
}

func (d *claimsDecoder) byte(c byte) bool {
	if d.peek() != c {
		return false
	}
	d.i++
	return true
}

// str reads a string of printable ASCII other than '"' and '\'.
func (d *claimsDecoder) str() (string, bool) {
	if !d.byte('"') {
		return "", false
	}
	start := d.i
	for d.i < len(d.b) {
		switch c := d.b[d.i]; {
		case c == '"':
			s := string(d.b[start:d.i])
			d.i++
			return s, true
		case c < 0x20 || c > 0x7e || c == '\\':
			return "", false
		}
		d.i++
	}
	return "", false
}

// strs reads an array of strings; [] is an empty, non-nil slice, as
// encoding/json makes it.
func (d *claimsDecoder) strs() ([]string, bool) {
	if !d.byte('[') {
		return nil, false
	}
	out := []string{}
	if d.byte(']') {
		return out, true
	}
	for {
		s, ok := d.str()
		if !ok {
			return nil, false
		}
		out = append(out, s)
		if d.byte(']') {
			return out, true
		}
		if !d.byte(',') {
			return nil, false
		}
	}
}

// audience reads aud as jwt.ClaimStrings decodes it: a string is a list of
// one, an empty array is no audience (nil).
func (d *claimsDecoder) audience() (jwt.ClaimStrings, bool) {
	if d.peek() == '"' {
		s, ok := d.str()
		return jwt.ClaimStrings{s}, ok
	}
	ss, ok := d.strs()
	if !ok || len(ss) == 0 {
		return nil, ok
	}
	return jwt.ClaimStrings(ss), true
}

// date reads a time claim of 1 to 15 digits (no sign, no fraction, no
// exponent, no leading zero), well inside float64's exact integers, so
// that it is the time jwt.NumericDate's own decoding gives.
func (d *claimsDecoder) date() (*jwt.NumericDate, bool) {
	start := d.i
	var n int64
	for d.i < len(d.b) && d.b[d.i] >= '0' && d.b[d.i] <= '9' {
		n = n*10 + int64(d.b[d.i]-'0')
		d.i++
	}
	digits := d.i - start
	if digits == 0 || digits > 15 || (digits > 1 && d.b[start] == '0') {
		return nil, false
	}
	return jwt.NewNumericDate(time.Unix(n, 0)), true
}
