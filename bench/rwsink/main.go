// rwsink is a Prometheus remote-write 1.0 receiver that stores nothing and counts everything.
//
// Why: on a small machine a real Prometheus cannot ingest the ~50k samples/s of a 1,000-worker
// fleet, let alone drain a two-minute outage backlog, so "points lost on the way" cannot be told
// apart from "Prometheus too slow". This sink decodes every request by hand (snappy block format,
// protobuf wire format: no generated code) and keeps exact counts, served as JSON on GET /stats.
// A separate control port takes the write listener down and up again, so a receiver outage can
// be simulated while the counts survive it.
//
//	rwsink -listen 127.0.0.1:9201 -control 127.0.0.1:9202 -marker ml_train_learning_rate -trace-id HEX
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"maps"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/golang/snappy"
	"google.golang.org/protobuf/encoding/protowire"
)

// Bounds on what is kept, so a runaway sender cannot exhaust the sink's memory; each set reports
// when it hit its cap, so a capped count is never mistaken for an exact one.
const (
	maxSeries   = 10_000_000
	maxMarkers  = 10_000_000
	maxTraceIDs = 1_000_000
	maxNames    = 100_000
	reservoir   = 100_000
)

// series is one decoded TimeSeries of a request: only what the counters need.
type series struct {
	hash      uint64
	name      []byte // slices of the request: nothing copied for series that are only counted
	samples   []sample
	traceIDs  []string
	exemplars int
	histos    int
}

type sample struct {
	value float64
	ts    int64
}

type markerKey struct {
	series uint64
	ts     int64
}

type sink struct {
	marker, wantTrace string

	mu                                    sync.Mutex
	requests, badRequests, bytes          int64
	samples, exemplars, histograms        int64
	seriesSet                             map[uint64]struct{}
	byName                                map[string]int64
	markerSamples, markerDuplicates       int64
	markerSeen                            map[markerKey]struct{}
	delays                                []float64 // a uniform reservoir of the marker's delays
	delayCount                            int64
	delayMax                              float64
	busy                                  time.Duration
	traceIDs                              map[string]struct{}
	seriesCapped, markCapped, traceCapped bool
}

// fields walks the protobuf message b, calling fn with each field's number, wire type, and its
// value (bytes for length-delimited fields, the integer for varint/fixed fields).
func fields(b []byte, fn func(protowire.Number, protowire.Type, []byte, uint64) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		var v []byte
		var x uint64
		switch typ {
		case protowire.BytesType:
			v, n = protowire.ConsumeBytes(b)
		case protowire.VarintType:
			x, n = protowire.ConsumeVarint(b)
		case protowire.Fixed64Type:
			x, n = protowire.ConsumeFixed64(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if err := fn(num, typ, v, x); err != nil {
			return err
		}
	}
	return nil
}

var errWireType = errors.New("unexpected wire type")

// want rejects a known field sent with the wrong wire type (a corrupt or foreign body).
func want(got, expected protowire.Type) error {
	if got != expected {
		return errWireType
	}
	return nil
}

// label decodes a Label{1 name, 2 value} into its name and value.
func label(b []byte) (name, value []byte, err error) {
	err = fields(b, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
		switch num {
		case 1:
			name = v
			return want(typ, protowire.BytesType)
		case 2:
			value = v
			return want(typ, protowire.BytesType)
		}
		return nil
	})
	return
}

// decodeSeries decodes TimeSeries{1 labels, 2 samples, 3 exemplars, 4 histograms}.
func decodeSeries(b []byte) (series, error) {
	var s series
	pairs := make([][2][]byte, 0, 16)
	err := fields(b, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
		if num >= 1 && num <= 4 {
			if err := want(typ, protowire.BytesType); err != nil {
				return err
			}
		}
		switch num {
		case 1:
			name, value, err := label(v)
			pairs = append(pairs, [2][]byte{name, value})
			return err
		case 2: // Sample{1 double value, 2 int64 timestamp}
			var smp sample
			err := fields(v, func(num protowire.Number, typ protowire.Type, _ []byte, x uint64) error {
				switch num {
				case 1:
					smp.value = math.Float64frombits(x)
					return want(typ, protowire.Fixed64Type)
				case 2:
					smp.ts = int64(x)
					return want(typ, protowire.VarintType)
				}
				return nil
			})
			s.samples = append(s.samples, smp)
			return err
		case 3: // Exemplar{1 labels, 2 value, 3 timestamp}: only its trace_id label matters here
			s.exemplars++
			return fields(v, func(num protowire.Number, typ protowire.Type, lb []byte, _ uint64) error {
				if num != 1 {
					return nil
				}
				if err := want(typ, protowire.BytesType); err != nil {
					return err
				}
				name, value, err := label(lb)
				if string(name) == "trace_id" {
					s.traceIDs = append(s.traceIDs, strings.ToLower(string(value)))
				}
				return err
			})
		case 4: // native histograms: counted, not decoded (the OTel exporter sends classic buckets)
			s.histos++
		}
		return nil
	})
	if err != nil {
		return s, err
	}
	// The identity of a series is its label *set*: hash it in name order, whatever the sender's order.
	byName := func(a, b [2][]byte) int { return bytes.Compare(a[0], b[0]) }
	if !slices.IsSortedFunc(pairs, byName) { // senders sort them (the spec asks to): only check
		slices.SortFunc(pairs, byName)
	}
	s.hash = 14695981039346656037 // FNV-1a, inline: hash/fnv's Write would copy every label
	for _, p := range pairs {
		for _, part := range [2][]byte{p[0], p[1]} {
			for _, c := range part {
				s.hash = (s.hash ^ uint64(c)) * 1099511628211
			}
			s.hash = (s.hash ^ 0xff) * 1099511628211 // a separator no label holds: a=bc differs from ab=c
		}
		if string(p[0]) == "__name__" {
			s.name = p[1]
		}
	}
	return s, nil
}

// decode turns a snappy-compressed WriteRequest{1 repeated TimeSeries, 3 metadata} into series.
// The whole body is decoded before anything is counted: a bad request counts as bad, nothing else.
func decode(body []byte) ([]series, error) {
	raw, err := snappy.Decode(nil, body)
	if err != nil {
		return nil, fmt.Errorf("snappy: %w", err)
	}
	var out []series
	err = fields(raw, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
		if num != 1 {
			return nil // metadata (3) and anything newer: not counted
		}
		if err := want(typ, protowire.BytesType); err != nil {
			return err
		}
		s, err := decodeSeries(v)
		out = append(out, s)
		return err
	})
	return out, err
}

func (k *sink) write(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	received := time.Now()
	now := float64(received.UnixNano()) / 1e9 // receipt time, before decoding adds its own delay
	var batch []series
	if err == nil {
		batch, err = decode(body)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	// Time from receipt to answer, which the sender waits on: busy_seconds / wall time says whether
	// the sink itself could be what holds a sender back.
	defer func() { k.busy += time.Since(received) }()
	k.requests++
	k.bytes += int64(len(body))
	if err != nil {
		k.badRequests++
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	for _, s := range batch {
		k.count(s, now)
	}
	w.WriteHeader(http.StatusNoContent)
}

// count adds one decoded series to the totals; the caller holds k.mu.
func (k *sink) count(s series, now float64) {
	k.samples += int64(len(s.samples))
	k.exemplars += int64(s.exemplars)
	k.histograms += int64(s.histos)
	if _, ok := k.seriesSet[s.hash]; !ok {
		if len(k.seriesSet) < maxSeries {
			k.seriesSet[s.hash] = struct{}{}
		} else {
			k.seriesCapped = true
		}
	}
	if _, ok := k.byName[string(s.name)]; ok || len(k.byName) < maxNames {
		k.byName[string(s.name)] += int64(len(s.samples))
	}
	for _, id := range s.traceIDs {
		if _, ok := k.traceIDs[id]; !ok {
			if len(k.traceIDs) < maxTraceIDs {
				k.traceIDs[id] = struct{}{}
			} else {
				k.traceCapped = true
			}
		}
	}
	if string(s.name) != k.marker {
		return
	}
	for _, smp := range s.samples {
		k.markerSamples++
		// A retried request resends samples Prometheus already has (it keeps one per series and
		// timestamp): count those apart, and the delay only on first receipt.
		key := markerKey{s.hash, smp.ts}
		if _, dup := k.markerSeen[key]; dup {
			k.markerDuplicates++
			continue
		}
		if len(k.markerSeen) < maxMarkers {
			k.markerSeen[key] = struct{}{}
		} else {
			k.markCapped = true
		}
		delay := now - smp.value // the fleet sets the marker's value to its send time in seconds
		k.delayCount++
		k.delayMax = max(k.delayMax, delay)
		if len(k.delays) < reservoir {
			k.delays = append(k.delays, delay)
		} else if i := rand.Int64N(k.delayCount); i < reservoir {
			k.delays[i] = delay // reservoir sampling: every delay equally likely to be kept
		}
	}
}

func (k *sink) stats(w http.ResponseWriter, r *http.Request, up bool) {
	wanted := strings.ToLower(r.URL.Query().Get("trace_id"))
	if wanted == "" {
		wanted = k.wantTrace
	}
	k.mu.Lock()
	_, found := k.traceIDs[wanted]
	delays := slices.Clone(k.delays)
	out := map[string]any{
		"up": up, "requests": k.requests, "bad_requests": k.badRequests, "bytes": k.bytes,
		"samples": k.samples, "exemplars": k.exemplars, "histograms": k.histograms,
		"series": len(k.seriesSet), "series_capped": k.seriesCapped, "samples_by_name": maps.Clone(k.byName),
		"marker": k.marker, "marker_samples": k.markerSamples, "marker_unique": len(k.markerSeen),
		"marker_duplicates": k.markerDuplicates, "marker_capped": k.markCapped,
		"busy_seconds": k.busy.Seconds(), "delay_count": k.delayCount, "delay_max_s": nil, "delay_median_s": nil,
		"trace_id": wanted, "trace_id_found": wanted != "" && found,
		"trace_ids": len(k.traceIDs), "trace_ids_capped": k.traceCapped,
	}
	if k.delayCount > 0 {
		out["delay_max_s"] = k.delayMax
	}
	k.mu.Unlock()
	if len(delays) > 0 { // sorted outside the lock: writes are not held up by a /stats
		slices.Sort(delays)
		out["delay_median_s"] = delays[len(delays)/2]
	}
	enc, err := json.Marshal(withCPU(out))
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(enc)
}

// withCPU adds the sink's own CPU seconds and peak RSS, so a bench can say what counting cost.
func withCPU(out map[string]any) map[string]any {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		out["cpu_seconds"] = time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
		out["max_rss_kib"] = ru.Maxrss
	}
	return out
}

// listener owns the write port; down/up replace its server, the counts live in the sink.
type listener struct {
	mu      sync.Mutex
	addr    string
	handler http.Handler
	srv     *http.Server
}

func (l *listener) up() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.srv != nil {
		return nil
	}
	ln, err := net.Listen("tcp", l.addr) // Go sets SO_REUSEADDR: the same port binds again at once
	if err != nil {
		return err
	}
	l.srv = &http.Server{Handler: l.handler}
	go l.srv.Serve(ln)
	return nil
}

// down stops accepting (new connections are refused, as by a dead receiver) and closes the
// keep-alive connections. Requests already being read are answered first, so every request is
// either counted and answered 204 or never reached the sink: none is counted that the sender
// saw fail (it would resend it, and count twice).
func (l *listener) down() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	l.srv.Shutdown(ctx)
	l.srv.Close() // whatever did not finish in 5 s
	l.srv = nil
}

func (l *listener) isUp() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.srv != nil
}

func newSink(marker, traceID string) *sink {
	return &sink{
		marker: marker, wantTrace: strings.ToLower(traceID),
		seriesSet: map[uint64]struct{}{}, byName: map[string]int64{},
		markerSeen: map[markerKey]struct{}{}, traceIDs: map[string]struct{}{},
	}
}

// routes gives the write port's handler to l and returns the control port's handler.
func routes(k *sink, l *listener) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v1/write", k.write)
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) { k.stats(w, r, true) })
	l.handler = mux

	ctl := http.NewServeMux()
	ctl.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) { k.stats(w, r, l.isUp()) })
	ctl.HandleFunc("POST /down", func(w http.ResponseWriter, r *http.Request) {
		l.down()
		w.WriteHeader(http.StatusNoContent)
	})
	ctl.HandleFunc("POST /up", func(w http.ResponseWriter, r *http.Request) {
		if err := l.up(); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	return ctl
}

func main() {
	listen := flag.String("listen", "127.0.0.1:9201", "remote-write address (POST /api/v1/write, GET /stats)")
	control := flag.String("control", "127.0.0.1:9202", "control address (POST /down, POST /up, GET /stats)")
	marker := flag.String("marker", "ml_train_learning_rate", "metric whose value is its send time (s)")
	traceID := flag.String("trace-id", "", "trace id (hex) to look for in exemplars' trace_id label")
	flag.Parse()

	k := newSink(*marker, *traceID)
	l := &listener{addr: *listen}
	ctl := routes(k, l)
	ctlLn, err := net.Listen("tcp", *control)
	if err != nil {
		log.Fatal(err)
	}
	if err := l.up(); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("rwsink: write on http://%s/api/v1/write, control on http://%s\n", *listen, *control)
	log.Fatal(http.Serve(ctlLn, ctl))
}
