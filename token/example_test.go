package token

import (
	"context"
	"fmt"
	"log"
	"time"
)

// The server side: keys shared through the store, tokens issued and
// verified with the same options.
func Example() {
	ctx := context.Background()
	store := &memStore{} // in production: a tokenstore.Store
	opts := []Option{WithIssuer("identity"), WithAudience("identity"), WithAccessTTL(15 * time.Minute)}

	keys, err := LoadOrCreate(ctx, store, EdDSA, opts...)
	if err != nil {
		log.Fatal(err)
	}
	issuer, err := NewIssuer(keys, opts...)
	if err != nil {
		log.Fatal(err)
	}
	verifier, err := NewVerifier(keys, opts...)
	if err != nil {
		log.Fatal(err)
	}

	sessionEnd := time.Now().Add(90 * 24 * time.Hour) // no token outlives its session
	tok, _, err := issuer.Issue(Claims{Subject: "u_123", Username: "alice", SessionID: "s1.s2"}, time.Now(), sessionEnd)
	if err != nil {
		log.Fatal(err)
	}
	c, err := verifier.Verify(tok)
	fmt.Println(c.Username, c.SessionID, err)
	// Output: alice s1.s2 <nil>
}

// Another service verifies locally with the published keys.
func ExampleParseJWKS() {
	keys, err := LoadOrCreate(context.Background(), &memStore{}, EdDSA)
	if err != nil {
		log.Fatal(err)
	}
	doc, err := JWKS(keys.Published()) // served at /.well-known/jwks.json
	if err != nil {
		log.Fatal(err)
	}

	set, err := ParseJWKS(doc) // what authn does with the fetched document
	if err != nil {
		log.Fatal(err)
	}
	verifier, err := NewVerifier(set)
	if err != nil {
		log.Fatal(err)
	}
	issuer, _ := NewIssuer(keys)
	tok, _, _ := issuer.Issue(Claims{Subject: "u_123", SessionID: "s1.s2"}, time.Now(), time.Time{})
	c, err := verifier.Verify(tok)
	fmt.Println(c.Subject, err)
	// Output: u_123 <nil>
}

func ExampleRefresh() {
	r, err := NewRefresh([]byte("a 32-byte secret from the keyring"))
	if err != nil {
		log.Fatal(err)
	}
	tok := r.Encode("ABCDEFGHIJKLMNOPQRST.abcdefghijklmnopqrst", 7, "AAAAAAAAAAAAAAAAAAAAAA")
	sid, gen, _, err := r.Decode(tok)
	fmt.Println(sid, gen, err)
	_, _, _, err = r.Decode(tok[:len(tok)-1] + "x")
	fmt.Println(err)
	// Output:
	// ABCDEFGHIJKLMNOPQRST.abcdefghijklmnopqrst 7 <nil>
	// token: invalid
}
