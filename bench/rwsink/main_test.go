package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/golang/snappy"
	"google.golang.org/protobuf/encoding/protowire"
)

// The requests here are encoded by hand from the remote-write 1.0 schema, independently of the
// decoder: WriteRequest{1 TimeSeries{1 Label{1 name, 2 value}, 2 Sample{1 value, 2 ts}, 3 Exemplar}}.

type tSeries struct {
	labels    [][2]string
	samples   []sample
	exemplars []string // trace ids
}

func appendLabel(b []byte, field protowire.Number, name, value string) []byte {
	var l []byte
	l = protowire.AppendTag(l, 1, protowire.BytesType)
	l = protowire.AppendString(l, name)
	l = protowire.AppendTag(l, 2, protowire.BytesType)
	l = protowire.AppendString(l, value)
	b = protowire.AppendTag(b, field, protowire.BytesType)
	return protowire.AppendBytes(b, l)
}

func encode(series ...tSeries) []byte {
	var req []byte
	for _, s := range series {
		var ts []byte
		for _, l := range s.labels {
			ts = appendLabel(ts, 1, l[0], l[1])
		}
		for _, smp := range s.samples {
			var b []byte
			b = protowire.AppendTag(b, 1, protowire.Fixed64Type)
			b = protowire.AppendFixed64(b, math.Float64bits(smp.value))
			b = protowire.AppendTag(b, 2, protowire.VarintType)
			b = protowire.AppendVarint(b, uint64(smp.ts))
			ts = protowire.AppendTag(ts, 2, protowire.BytesType)
			ts = protowire.AppendBytes(ts, b)
		}
		for _, id := range s.exemplars {
			var e []byte
			e = appendLabel(e, 1, "span_id", "00f067aa0ba902b7")
			e = appendLabel(e, 1, "trace_id", id)
			e = protowire.AppendTag(e, 2, protowire.Fixed64Type)
			e = protowire.AppendFixed64(e, math.Float64bits(0.5))
			ts = protowire.AppendTag(ts, 3, protowire.BytesType)
			ts = protowire.AppendBytes(ts, e)
		}
		req = protowire.AppendTag(req, 1, protowire.BytesType)
		req = protowire.AppendBytes(req, ts)
	}
	req = appendLabel(req, 3, "metadata", "ignored") // field 3 (metadata): skipped, whatever it holds
	return snappy.Encode(nil, req)
}

func post(t *testing.T, h http.Handler, body []byte) int {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/api/v1/write", bytes.NewReader(body)))
	return rec.Code
}

func stats(t *testing.T, h http.Handler, query string) map[string]any {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/stats"+query, nil))
	var out map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatal(err, rec.Body.String())
	}
	return out
}

func TestCounts(t *testing.T) {
	k := newSink("lr", "ABCDEF")
	l := &listener{}
	routes(k, l)
	now := float64(time.Now().UnixNano()) / 1e9
	lr := tSeries{
		labels:  [][2]string{{"__name__", "lr"}, {"job", "a"}, {"worker", "1"}},
		samples: []sample{{now - 2, 1000}, {now - 1, 2000}},
	}
	// The same label set in another order is the same series.
	lrAgain := tSeries{labels: [][2]string{{"worker", "1"}, {"__name__", "lr"}, {"job", "a"}}, samples: []sample{{now, 3000}}}
	bucket := tSeries{
		labels:    [][2]string{{"__name__", "step_bucket"}, {"le", "1"}},
		samples:   []sample{{4, 1000}},
		exemplars: []string{"abcdef", "0123"},
	}
	if code := post(t, l.handler, encode(lr, lrAgain, bucket)); code != http.StatusNoContent {
		t.Fatalf("status %d", code)
	}
	if code := post(t, l.handler, encode(lrAgain)); code != http.StatusNoContent { // a retry: a duplicate
		t.Fatalf("status %d", code)
	}
	s := stats(t, l.handler, "")
	want := map[string]any{
		"requests": 2.0, "samples": 5.0, "exemplars": 2.0, "series": 2.0, "marker_samples": 4.0,
		"marker_unique": 3.0, "marker_duplicates": 1.0, "delay_count": 3.0, "trace_ids": 2.0,
		"trace_id": "abcdef", "trace_id_found": true, "bad_requests": 0.0,
	}
	for key, value := range want {
		if s[key] != value {
			t.Errorf("%s = %v, want %v", key, s[key], value)
		}
	}
	if by := s["samples_by_name"].(map[string]any); by["lr"] != 4.0 || by["step_bucket"] != 1.0 {
		t.Errorf("samples_by_name = %v", by)
	}
	if m := s["delay_max_s"].(float64); m < 2 || m > 60 {
		t.Errorf("delay_max_s = %v, want about 2 s", m)
	}
	if stats(t, l.handler, "?trace_id=0123")["trace_id_found"] != true || stats(t, l.handler, "?trace_id=99")["trace_id_found"] != false {
		t.Error("trace_id query")
	}

	// Undecodable bodies: 400, counted as bad, nothing else counted.
	badWire := snappy.Encode(nil, protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), 7))
	truncated := encode(lr)
	raw, _ := snappy.Decode(nil, truncated)
	for _, body := range [][]byte{[]byte("not snappy"), badWire, snappy.Encode(nil, raw[:len(raw)-30])} {
		if code := post(t, l.handler, body); code != http.StatusBadRequest {
			t.Errorf("status %d for a bad body", code)
		}
	}
	s = stats(t, l.handler, "")
	if s["bad_requests"] != 3.0 || s["samples"] != 5.0 || s["requests"] != 5.0 {
		t.Errorf("after bad bodies: %v", s)
	}
}

func TestDownUp(t *testing.T) {
	free, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := free.Addr().String()
	free.Close()
	k := newSink("lr", "")
	l := &listener{addr: addr}
	ctl := routes(k, l)
	if err := l.up(); err != nil {
		t.Fatal(err)
	}
	defer l.down()
	url := fmt.Sprintf("http://%s/api/v1/write", addr)
	body := encode(tSeries{labels: [][2]string{{"__name__", "lr"}}, samples: []sample{{1, 1}}})
	send := func() error {
		resp, err := http.Post(url, "application/x-protobuf", bytes.NewReader(body))
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	control := func(path string) {
		rec := httptest.NewRecorder()
		ctl.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, path, nil))
		if rec.Code != http.StatusNoContent {
			t.Fatalf("%s: %d", path, rec.Code)
		}
	}
	if err := send(); err != nil { // leaves a keep-alive connection open: /down must close it
		t.Fatal(err)
	}
	control("/down")
	if err := send(); err == nil {
		t.Fatal("a write succeeded while down")
	}
	if _, err := net.Dial("tcp", addr); err == nil {
		t.Fatal("the write port accepted a connection while down")
	}
	if stats(t, ctl, "")["up"] != false {
		t.Error("stats say up while down")
	}
	control("/up")
	if err := send(); err != nil {
		t.Fatal(err)
	}
	if s := stats(t, ctl, ""); s["samples"] != 2.0 || s["up"] != true {
		t.Errorf("counts across the outage: %v", s)
	}
}

// BenchmarkWrite: decode and count a request shaped like the gateway's (one sample per series,
// ~12 labels each); reports the CPU per sample, from which the sink's share at a rate follows.
func BenchmarkWrite(b *testing.B) {
	k := newSink("lr", "")
	l := &listener{}
	routes(k, l)
	var series []tSeries
	for i := range 2000 {
		labels := [][2]string{{"__name__", fmt.Sprintf("hw_gpu_metric_%d", i%40)}}
		for j := range 11 {
			labels = append(labels, [2]string{fmt.Sprintf("label_%d", j), fmt.Sprintf("value-%d-%d", j, i)})
		}
		series = append(series, tSeries{labels: labels, samples: []sample{{float64(i), int64(i)}}})
	}
	body := encode(series...)
	b.ResetTimer()
	for range b.N {
		rec := httptest.NewRecorder()
		l.handler.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/api/v1/write", bytes.NewReader(body)))
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(series)), "ns/sample")
}
