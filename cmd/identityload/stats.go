package main

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// recorder is one client's record of a measured run. Each client owns its
// recorder, so recording takes no lock; result merges them at the end.
type recorder struct {
	lat    []time.Duration
	errs   int64
	byCode map[string]int64
	// refused are the latencies of RESOURCE_EXHAUSTED answers: how fast a
	// flood is turned away.
	refused []time.Duration
}

func newRecorder() *recorder { return &recorder{lat: make([]time.Duration, 0, 1<<14)} }

func (r *recorder) record(d time.Duration, err error) {
	if err == nil {
		r.lat = append(r.lat, d)
		return
	}
	r.errs++
	if status.Code(err) == codes.ResourceExhausted {
		r.refused = append(r.refused, d)
	}
	if r.byCode == nil {
		r.byCode = make(map[string]int64)
	}
	r.byCode[status.Code(err).String()]++
}

// result is a scenario's throughput and latency distribution. Latencies
// are exact: every successful request's is kept and sorted (a few hundred
// thousand values per scenario), so the percentiles need no histogram.
type result struct {
	name    string
	elapsed time.Duration
	ok      int64
	errs    int64
	byCode  map[string]int64
	sorted  []time.Duration
	refused []time.Duration // sorted
	// cpu is the CPU time each measured process used during the run
	// ("client" is this tool), when known.
	cpu []procCPU
}

type procCPU struct {
	name string
	used time.Duration
}

func merge(name string, elapsed time.Duration, recs []*recorder) result {
	res := result{name: name, elapsed: elapsed, byCode: map[string]int64{}}
	n := 0
	for _, r := range recs {
		n += len(r.lat)
	}
	res.sorted = make([]time.Duration, 0, n)
	for _, r := range recs {
		res.sorted = append(res.sorted, r.lat...)
		res.refused = append(res.refused, r.refused...)
		res.errs += r.errs
		for k, v := range r.byCode {
			res.byCode[k] += v
		}
	}
	slices.Sort(res.sorted)
	slices.Sort(res.refused)
	res.ok = int64(len(res.sorted))
	return res
}

// combine is two runs of the same measurement as one.
func combine(a, b result) result {
	out := result{name: a.name, elapsed: a.elapsed + b.elapsed, ok: a.ok + b.ok, errs: a.errs + b.errs, byCode: map[string]int64{}}
	for _, m := range []map[string]int64{a.byCode, b.byCode} {
		for k, v := range m {
			out.byCode[k] += v
		}
	}
	out.sorted = append(slices.Clone(a.sorted), b.sorted...)
	slices.Sort(out.sorted)
	out.refused = append(slices.Clone(a.refused), b.refused...)
	slices.Sort(out.refused)
	return out
}

// rate is successful requests per second.
func (r result) rate() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.ok) / r.elapsed.Seconds()
}

// quantile is the q-quantile of the successful requests' latencies
// (nearest rank).
func (r result) quantile(q float64) time.Duration { return quantile(r.sorted, q) }

func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func (r result) String() string {
	var codes string
	if r.errs > 0 {
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(r.byCode)) {
			parts = append(parts, fmt.Sprintf("%s:%d", k, r.byCode[k]))
		}
		codes = " (" + strings.Join(parts, " ") + ")"
		if len(r.refused) > 0 {
			codes += fmt.Sprintf(" refused in p50 %s p99 %s", ms(quantile(r.refused, .5)), ms(quantile(r.refused, .99)))
		}
	}
	var cpu string
	if n := r.ok + r.errs; n > 0 && len(r.cpu) > 0 {
		var parts []string
		for _, c := range r.cpu {
			parts = append(parts, fmt.Sprintf("%s %.1f", c.name, float64(c.used)/float64(time.Microsecond)/float64(n)))
		}
		cpu = "  cpu µs/req: " + strings.Join(parts, ", ")
	}
	return fmt.Sprintf("%-22s %9.0f req/s  p50 %8s  p99 %8s  p99.9 %8s  n %8d  errors %d%s%s",
		r.name, r.rate(), ms(r.quantile(.50)), ms(r.quantile(.99)), ms(r.quantile(.999)), r.ok, r.errs, codes, cpu)
}

// cpuMeter reads the CPU time of this process and of the measured server
// processes, so a run can say what one request cost each of them.
type cpuMeter struct {
	names []string
	read  []func() (time.Duration, bool)
}

func newCPUMeter(serverPID, redisPID int) *cpuMeter {
	m := &cpuMeter{}
	add := func(name string, f func() (time.Duration, bool)) {
		if _, ok := f(); ok {
			m.names = append(m.names, name)
			m.read = append(m.read, f)
		}
	}
	if serverPID > 0 {
		add("identityd", func() (time.Duration, bool) { return processCPU(serverPID) })
	}
	if redisPID > 0 {
		add("redis", func() (time.Duration, bool) { return processCPU(redisPID) })
	}
	add("client", cpuUsed)
	return m
}

func (m *cpuMeter) now() []time.Duration {
	out := make([]time.Duration, len(m.read))
	for i, f := range m.read {
		out[i], _ = f()
	}
	return out
}

func (m *cpuMeter) since(start []time.Duration) []procCPU {
	end := m.now()
	out := make([]procCPU, len(end))
	for i := range end {
		out[i] = procCPU{name: m.names[i], used: end[i] - start[i]}
	}
	return out
}

func ms(d time.Duration) string { return fmt.Sprintf("%.3fms", float64(d)/float64(time.Millisecond)) }
