package buildinfo

import (
	"runtime/debug"
	"strings"
	"testing"
)

func TestFromBuildInfo(t *testing.T) {
	t.Parallel()
	bi := &debug.BuildInfo{
		GoVersion: "go1.26.8",
		Main:      debug.Module{Path: "github.com/identityd/identity", Version: "v0.0.0-20261123101500-e8fec45a1b2c+dirty"},
		Settings: []debug.BuildSetting{
			{Key: "vcs", Value: "git"},
			{Key: "vcs.revision", Value: "e8fec45a1b2c0000000000000000000000000000"},
			{Key: "vcs.time", Value: "2026-11-23T10:15:00Z"},
			{Key: "vcs.modified", Value: "true"},
		},
	}
	got := fromBuildInfo(bi, true)
	if got.Version != bi.Main.Version || got.Revision != "e8fec45a1b2c0000000000000000000000000000" ||
		got.Time != "2026-11-23T10:15:00Z" || !got.Modified || got.GoVersion != "go1.26.8" {
		t.Errorf("fromBuildInfo = %+v", got)
	}
	text := got.String("identityd")
	for _, want := range []string{
		"identityd v0.0.0-20261123101500-e8fec45a1b2c+dirty\n",
		"revision: e8fec45a1b2c0000000000000000000000000000\n",
		"commit time: 2026-11-23T10:15:00Z\n",
		"modified: true\n",
		"go: go1.26.8 ",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("String() lacks %q:\n%s", want, text)
		}
	}
	if !strings.HasPrefix(text, "identityd ") {
		t.Errorf("String() must start with the command's name:\n%s", text)
	}
}

func TestWithoutVCS(t *testing.T) {
	t.Parallel()
	for _, bi := range []*debug.BuildInfo{nil, {Main: debug.Module{Version: ""}}} {
		got := fromBuildInfo(bi, bi != nil)
		if got.Version != "(devel)" || got.Revision != "" || got.GoVersion == "" {
			t.Errorf("fromBuildInfo(%v) = %+v; want (devel), no revision, a Go version", bi, got)
		}
		if text := got.String("identityctl"); strings.Contains(text, "revision") || strings.Contains(text, "modified") {
			t.Errorf("no VCS facts to print, got:\n%s", text)
		}
	}
}
