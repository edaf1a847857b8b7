// Package metrics owns presenced's Prometheus metrics: the counters the
// SIP side moves, a store decorator timing commits, and a collector that
// reads the extensions' own counters at scrape time. A nil *Metrics is
// valid and records nothing, so the server runs the same without it.
package metrics

import (
	"context"
	"strconv"
	"time"

	"github.com/presenced/presenced/internal/extension"
	"github.com/presenced/presenced/internal/store"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics holds every series; Registry is what /metrics serves.
type Metrics struct {
	Registry *prometheus.Registry

	requests      *prometheus.CounterVec
	responses     *prometheus.CounterVec
	subscriptions *prometheus.GaugeVec
	publications  *prometheus.GaugeVec
	notifies      *prometheus.CounterVec
	notifyLatency *prometheus.HistogramVec
	commits       *prometheus.HistogramVec
}

// New registers every series, with the Go runtime's and the process's
// own, in a fresh registry.
func New(modules func() []*extension.Module) *Metrics {
	m := &Metrics{Registry: prometheus.NewRegistry()}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "presenced_sip_requests_total",
		Help: "SIP requests received, by method."}, []string{"method"})
	m.responses = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "presenced_sip_responses_total",
		Help: "SIP responses sent, by method and status code."}, []string{"method", "code"})
	m.subscriptions = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "presenced_subscriptions",
		Help: "Active subscriptions, by event package."}, []string{"event"})
	m.publications = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "presenced_publications",
		Help: "Live publications, by event package."}, []string{"event"})
	m.notifies = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "presenced_notify_total",
		Help: "NOTIFYs sent, by event package and result (ok: a 2xx came back; failed: timeout, transport error or non-2xx; coalesced: replaced by a newer state before it was sent)."},
		[]string{"event", "result"})
	m.notifyLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "presenced_notify_latency_seconds",
		Help:    "From the state change that caused a NOTIFY to its 2xx.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}, []string{"event"})
	m.commits = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "presenced_store_commit_seconds",
		Help:    "Store commit latency (group commit included), by result.",
		Buckets: prometheus.ExponentialBuckets(0.00005, 2, 16)}, []string{"result"})
	m.Registry.MustRegister(m.requests, m.responses, m.subscriptions, m.publications, m.notifies,
		m.notifyLatency, m.commits, collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if modules != nil {
		m.Registry.MustRegister(&extensionCollector{modules: modules})
	}
	return m
}

// Request counts one request received.
func (m *Metrics) Request(method string) {
	if m != nil {
		m.requests.WithLabelValues(method).Inc()
	}
}

// Response counts one response sent.
func (m *Metrics) Response(method string, code int) {
	if m != nil {
		m.responses.WithLabelValues(method, strconv.Itoa(code)).Inc()
	}
}

// Subscriptions moves the active-subscription gauge of event by delta.
func (m *Metrics) Subscriptions(event string, delta float64) {
	if m != nil {
		m.subscriptions.WithLabelValues(event).Add(delta)
	}
}

// Publications moves the live-publication gauge of event by delta.
func (m *Metrics) Publications(event string, delta float64) {
	if m != nil {
		m.publications.WithLabelValues(event).Add(delta)
	}
}

// Notify records one NOTIFY transaction's outcome; since is when the
// change it reports happened.
func (m *Metrics) Notify(event string, ok bool, since time.Time) {
	if m == nil {
		return
	}
	if !ok {
		m.notifies.WithLabelValues(event, "failed").Inc()
		return
	}
	m.notifies.WithLabelValues(event, "ok").Inc()
	m.notifyLatency.WithLabelValues(event).Observe(time.Since(since).Seconds())
}

// NotifyCoalesced counts a NOTIFY replaced by a newer one before it was
// sent (result="coalesced" of presenced_notify_total).
func (m *Metrics) NotifyCoalesced(event string) {
	if m == nil {
		return
	}
	m.notifies.WithLabelValues(event, "coalesced").Inc()
}

// Store wraps s so that every commit is timed.
func (m *Metrics) Store(s store.Store) store.Store {
	if m == nil {
		return s
	}
	return &timedStore{Store: s, m: m}
}

type timedStore struct {
	store.Store
	m *Metrics
}

// Unwrap returns the store timed, whose Feed the server follows
// (store.As).
func (t *timedStore) Unwrap() store.Store { return t.Store }

func (t *timedStore) Commit(ctx context.Context, b *store.Batch) error {
	start := time.Now()
	err := t.Store.Commit(ctx, b)
	result := "ok"
	if err != nil {
		result = "error"
	}
	t.m.commits.WithLabelValues(result).Observe(time.Since(start).Seconds())
	return err
}

// extensionCollector reads each module's counters at scrape time, so a
// reloaded module shows up without re-registration.
type extensionCollector struct {
	modules func() []*extension.Module
}

var (
	extCalls = prometheus.NewDesc("presenced_extension_calls_total",
		"Calls into an extension module.", []string{"extension"}, nil)
	extErrors = prometheus.NewDesc("presenced_extension_errors_total",
		"Calls that failed (trap, deadline, bad output); each discards its instance.", []string{"extension"}, nil)
	extSeconds = prometheus.NewDesc("presenced_extension_call_seconds_total",
		"Time spent in calls into an extension module.", []string{"extension"}, nil)
	extInstances = prometheus.NewDesc("presenced_extension_instances",
		"Live instances in an extension's pool.", []string{"extension"}, nil)
	extBackoff = prometheus.NewDesc("presenced_extension_backoff",
		"1 while an extension that kept failing is backed off (its calls refused, answered 503), else 0.", []string{"extension"}, nil)
	extRefused = prometheus.NewDesc("presenced_extension_refused_total",
		"Calls refused without running while an extension was backed off.", []string{"extension"}, nil)
)

func (c *extensionCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- extCalls
	ch <- extErrors
	ch <- extSeconds
	ch <- extInstances
	ch <- extBackoff
	ch <- extRefused
}

func (c *extensionCollector) Collect(ch chan<- prometheus.Metric) {
	for _, mod := range c.modules() {
		st := mod.Stats()
		ch <- prometheus.MustNewConstMetric(extCalls, prometheus.CounterValue, float64(st.Calls), mod.Name())
		ch <- prometheus.MustNewConstMetric(extErrors, prometheus.CounterValue, float64(st.Failures), mod.Name())
		ch <- prometheus.MustNewConstMetric(extSeconds, prometheus.CounterValue, st.Total.Seconds(), mod.Name())
		ch <- prometheus.MustNewConstMetric(extInstances, prometheus.GaugeValue, float64(st.Instances), mod.Name())
		backoff := 0.0
		if !st.BackoffUntil.IsZero() {
			backoff = 1
		}
		ch <- prometheus.MustNewConstMetric(extBackoff, prometheus.GaugeValue, backoff, mod.Name())
		ch <- prometheus.MustNewConstMetric(extRefused, prometheus.CounterValue, float64(st.Refused), mod.Name())
	}
}
