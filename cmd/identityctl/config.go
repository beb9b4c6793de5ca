package main

import (
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/identityd/identity/users"
)

// config is the global flags. Each starts from its IDENTITY_* variable (or
// the default) and a flag given on the command line wins.
type config struct {
	redisURL    string
	redisAddrs  string
	redisCAFile string
	// sentinelMaster makes redisAddrs the sentinels' addresses.
	sentinelMaster string

	server       string
	token        string
	user         string
	passwordFile string
	// TLS to --server: on with useTLS or any of the files.
	useTLS      bool
	tlsCAFile   string
	tlsCertFile string
	tlsKeyFile  string

	signingAlg     string
	accessTTL      time.Duration
	leeway         time.Duration
	keysDir        string
	refreshIdleTTL time.Duration
	// masterKeyFile opens (and seals) the keyring as identityd's
	// IDENTITY_MASTER_KEY_FILE does; newMasterKeyFile is key rewrap's
	// target.
	masterKeyFile    string
	newMasterKeyFile string
	// passwordMinLength is the password policy's minimum for passwords
	// set with direct store access (identityd applies its own otherwise).
	passwordMinLength int

	json    bool
	timeout time.Duration
}

func (c *config) fromEnv(getenv func(string) string) error {
	c.redisURL = getenv("IDENTITY_REDIS_URL")
	c.redisAddrs = getenv("IDENTITY_REDIS_ADDRS")
	c.redisCAFile = getenv("IDENTITY_REDIS_CA_FILE")
	// Not identityd's IDENTITY_TLS_*: those name its own certificate,
	// which identityctl must not present as a client's.
	c.tlsCAFile = getenv("IDENTITY_SERVER_CA_FILE")
	c.tlsCertFile = getenv("IDENTITY_CLIENT_CERT_FILE")
	c.tlsKeyFile = getenv("IDENTITY_CLIENT_KEY_FILE")
	c.sentinelMaster = getenv("IDENTITY_REDIS_SENTINEL_MASTER")
	c.server = or(getenv("IDENTITY_SERVER"), "127.0.0.1:9090")
	c.token = getenv("IDENTITY_TOKEN")
	c.user = getenv("IDENTITY_USER")
	c.passwordFile = getenv("IDENTITY_PASSWORD_FILE")
	c.signingAlg = or(getenv("IDENTITY_SIGNING_ALG"), "EdDSA")
	c.keysDir = getenv("IDENTITY_KEYS_DIR")
	c.masterKeyFile = getenv("IDENTITY_MASTER_KEY_FILE")
	c.newMasterKeyFile = getenv("IDENTITY_NEW_MASTER_KEY_FILE")
	var errs []error
	var err error
	c.accessTTL, err = durationEnv(getenv, "IDENTITY_ACCESS_TTL", 15*time.Minute)
	errs = append(errs, err)
	c.leeway, err = durationEnv(getenv, "IDENTITY_LEEWAY", 30*time.Second)
	errs = append(errs, err)
	c.refreshIdleTTL, err = durationEnv(getenv, "IDENTITY_REFRESH_IDLE_TTL", 720*time.Hour)
	errs = append(errs, err)
	c.timeout, err = durationEnv(getenv, "IDENTITY_TIMEOUT", 30*time.Second)
	errs = append(errs, err)
	if v := getenv("IDENTITY_SERVER_TLS"); v != "" {
		if c.useTLS, err = strconv.ParseBool(v); err != nil {
			errs = append(errs, fmt.Errorf("IDENTITY_SERVER_TLS: %v", err))
		}
	}
	c.passwordMinLength, err = intEnv(getenv, "IDENTITY_PASSWORD_MIN_LENGTH", users.DefaultMinPasswordLength)
	errs = append(errs, err)
	return errors.Join(errs...)
}

// register adds the global flags to fs with the current values as
// defaults, so a command's FlagSet accepts them too (`user list --json`)
// without undoing what was parsed before the command. The defaults are
// never printed: usage is our own text, so IDENTITY_TOKEN cannot leak.
func (c *config) register(fs *flag.FlagSet) {
	fs.StringVar(&c.redisURL, "redis-url", c.redisURL, "")
	fs.StringVar(&c.redisAddrs, "redis-addrs", c.redisAddrs, "")
	fs.StringVar(&c.redisCAFile, "redis-ca-file", c.redisCAFile, "")
	fs.BoolVar(&c.useTLS, "tls", c.useTLS, "")
	fs.StringVar(&c.tlsCAFile, "tls-ca-file", c.tlsCAFile, "")
	fs.StringVar(&c.tlsCertFile, "tls-cert-file", c.tlsCertFile, "")
	fs.StringVar(&c.tlsKeyFile, "tls-key-file", c.tlsKeyFile, "")
	fs.StringVar(&c.sentinelMaster, "redis-sentinel-master", c.sentinelMaster, "")
	fs.StringVar(&c.server, "server", c.server, "")
	fs.StringVar(&c.token, "token", c.token, "")
	fs.StringVar(&c.user, "user", c.user, "")
	fs.StringVar(&c.passwordFile, "password-file", c.passwordFile, "")
	fs.StringVar(&c.signingAlg, "signing-alg", c.signingAlg, "")
	fs.DurationVar(&c.accessTTL, "access-ttl", c.accessTTL, "")
	fs.DurationVar(&c.leeway, "leeway", c.leeway, "")
	fs.StringVar(&c.keysDir, "keys-dir", c.keysDir, "")
	fs.StringVar(&c.masterKeyFile, "master-key-file", c.masterKeyFile, "")
	fs.StringVar(&c.newMasterKeyFile, "new-master-key-file", c.newMasterKeyFile, "")
	fs.DurationVar(&c.refreshIdleTTL, "refresh-idle-ttl", c.refreshIdleTTL, "")
	fs.IntVar(&c.passwordMinLength, "password-min-length", c.passwordMinLength, "")
	fs.BoolVar(&c.json, "json", c.json, "")
	fs.DurationVar(&c.timeout, "timeout", c.timeout, "")
}

// serverTLS reports whether --server is reached over TLS.
func (c *config) serverTLS() bool {
	return c.useTLS || c.tlsCAFile != "" || c.tlsCertFile != "" || c.tlsKeyFile != ""
}

// direct reports whether identityctl talks to the store itself.
func (c *config) direct() bool { return c.redisURL != "" || c.redisAddrs != "" }

// check validates the combination once every flag is parsed.
func (c *config) check() error {
	if c.redisURL != "" && c.redisAddrs != "" {
		return errors.New("--redis-url and --redis-addrs are exclusive: give one")
	}
	if c.sentinelMaster != "" && c.redisAddrs == "" {
		return errors.New("--redis-sentinel-master needs the sentinels' addresses in --redis-addrs")
	}
	if c.timeout <= 0 {
		return fmt.Errorf("--timeout must be positive, got %s", c.timeout)
	}
	if c.direct() {
		if err := c.passwordPolicy().Validate(); err != nil {
			return fmt.Errorf("--password-min-length: %w", err)
		}
		return nil
	}
	if (c.tlsCertFile == "") != (c.tlsKeyFile == "") {
		return errors.New("--tls-cert-file and --tls-key-file go together: give both or neither")
	}
	if c.server == "" {
		return errors.New("no store and no server: give --redis-url, --redis-addrs or --server")
	}
	switch {
	case c.token != "" && c.user != "":
		return errors.New("--token and --user are exclusive: give one")
	case c.token == "" && c.user == "":
		return errors.New("identityd needs an admin's credentials: give --token (IDENTITY_TOKEN) or --user with --password-file, or reach the store with --redis-url/--redis-addrs")
	case c.user != "" && c.passwordFile == "":
		return errors.New("--user needs --password-file (IDENTITY_PASSWORD_FILE)")
	}
	return nil
}

// addrs splits --redis-addrs, ignoring blanks around commas.
func (c *config) addrs() []string {
	var out []string
	for a := range strings.SplitSeq(c.redisAddrs, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

func or(v, def string) string {
	if v != "" {
		return v
	}
	return def
}

// durationEnv reads a duration from the environment, keeping def when unset.
func durationEnv(getenv func(string) string, name string, def time.Duration) (time.Duration, error) {
	v := getenv(name)
	if v == "" {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("%s: %v", name, err)
	}
	return d, nil
}

// intEnv reads an integer from the environment, keeping def when unset.
func intEnv(getenv func(string) string, name string, def int) (int, error) {
	v := getenv(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("%s: %v", name, err)
	}
	return n, nil
}

// passwordPolicy is the rule for passwords identityctl sets in the store
// itself, the one identityd applies with the same setting.
func (c *config) passwordPolicy() users.PasswordPolicy {
	return users.PasswordPolicy{MinLength: c.passwordMinLength}
}
