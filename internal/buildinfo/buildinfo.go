// Package buildinfo says which build of identity is running, from what the
// Go toolchain stamped into the binary (runtime/debug.ReadBuildInfo): the
// module version, the VCS revision and its time, whether the work tree had
// uncommitted changes, and the Go version. The commands print it for
// --version and the server puts the version in its OpenAPI document.
//
// It reads nothing but the binary: no ldflags to set, no file to ship. A
// binary built without VCS information (go run, a tree without .git, a
// test binary) still reports its Go version, with the rest left empty.
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
)

// Info is what a binary knows of its build.
type Info struct {
	// Version is the main module's version: a tag (v1.2.0), a
	// pseudo-version the go command derived from the VCS
	// (v0.0.0-20261123101500-e8fec45a1b2c+dirty), or "(devel)".
	Version string
	// Revision is the VCS commit, Time its commit time (RFC 3339), and
	// Modified whether the work tree differed from it; empty and false
	// when the go command recorded no VCS information.
	Revision string
	Time     string
	Modified bool
	// GoVersion is the toolchain that built the binary (go1.26.8).
	GoVersion string
	// Platform is the GOOS/GOARCH the binary runs as.
	Platform string
}

// Read returns the running binary's Info.
func Read() Info {
	bi, ok := debug.ReadBuildInfo()
	return fromBuildInfo(bi, ok)
}

func fromBuildInfo(bi *debug.BuildInfo, ok bool) Info {
	info := Info{Version: "(devel)", GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if !ok || bi == nil {
		return info
	}
	if v := bi.Main.Version; v != "" {
		info.Version = v
	}
	if bi.GoVersion != "" {
		info.GoVersion = bi.GoVersion
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			info.Revision = s.Value
		case "vcs.time":
			info.Time = s.Value
		case "vcs.modified":
			info.Modified = s.Value == "true"
		}
	}
	return info
}

// String is the --version text of the command named name: a first line
// "name version", then one "key: value" line per known fact.
func (i Info) String(name string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s\n", name, i.Version)
	if i.Revision != "" {
		fmt.Fprintf(&b, "revision: %s\n", i.Revision)
		if i.Time != "" {
			fmt.Fprintf(&b, "commit time: %s\n", i.Time)
		}
		fmt.Fprintf(&b, "modified: %t\n", i.Modified)
	}
	fmt.Fprintf(&b, "go: %s %s\n", i.GoVersion, i.Platform)
	return b.String()
}
