package authn

import (
	"context"
	"errors"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	identityv1 "github.com/identityd/identity/gen/identity/v1"
)

// ServiceRole is the role identity asks of a WatchRevocations caller: the
// stream names the session and user of every logout, so only services may
// read it, never an anonymous caller.
const ServiceRole = "service"

// ServiceAccount is a service's own identity account, used as gRPC per-RPC
// credentials: it logs in with its username and password, sends the access
// token as `authorization: Bearer`, and refreshes it (rotating the refresh
// token) before it expires, logging in again if the session ended. Give it
// to a verifier with WithWatchCredentials so the revocation stream is
// opened as that account (which needs the ServiceRole).
//
// It sends its token on plaintext connections too (RequireTransportSecurity
// is false) so it works over loopback; across a network, dial identity with
// TLS (TLSCredentials). It is safe for concurrent use.
type ServiceAccount struct {
	client   identityv1.IdentityServiceClient
	username string
	password string
	now      func() time.Time
	timeout  time.Duration

	mu      sync.Mutex
	access  string
	exp     time.Time
	refresh string
}

var _ credentials.PerRPCCredentials = (*ServiceAccount)(nil)

// NewServiceAccount returns credentials that log in to identity over conn
// as username. Nothing is sent until the first call that uses them.
func NewServiceAccount(conn grpc.ClientConnInterface, username, password string) *ServiceAccount {
	return &ServiceAccount{
		client:   identityv1.NewIdentityServiceClient(conn),
		username: username,
		password: password,
		now:      time.Now,
		timeout:  DefaultCallTimeout,
	}
}

// refreshAhead is how long before its expiry an access token is replaced.
const refreshAhead = 30 * time.Second

// GetRequestMetadata implements credentials.PerRPCCredentials.
func (s *ServiceAccount) GetRequestMetadata(ctx context.Context, _ ...string) (map[string]string, error) {
	tok, err := s.Token(ctx)
	if err != nil {
		return nil, err
	}
	return map[string]string{"authorization": "Bearer " + tok}, nil
}

// RequireTransportSecurity implements credentials.PerRPCCredentials.
func (s *ServiceAccount) RequireTransportSecurity() bool { return false }

// Token returns a current access token of the account.
func (s *ServiceAccount) Token(ctx context.Context) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.access != "" && s.now().Add(refreshAhead).Before(s.exp) {
		return s.access, nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	var pair *identityv1.TokenPair
	var err error
	if s.refresh != "" {
		pair, err = s.client.Refresh(ctx, &identityv1.RefreshRequest{RefreshToken: s.refresh})
	}
	if s.refresh == "" || err != nil {
		// No session yet, or it ended (revoked, expired): log in again.
		pair, err = s.client.Login(ctx, &identityv1.LoginRequest{Username: s.username, Password: s.password})
	}
	if err != nil {
		s.access, s.refresh = "", ""
		return "", errors.Join(errors.New("authn: service account login failed"), err)
	}
	s.access, s.refresh = pair.GetAccessToken(), pair.GetRefreshToken()
	s.exp = pair.GetAccessTokenExpiresAt().AsTime()
	return s.access, nil
}
