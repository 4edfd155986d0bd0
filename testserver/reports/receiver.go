// Package reports is the test server's receiver of device reports (docs/fleet.md): what an
// AWS deployment does with API Gateway, a Lambda and a DynamoDB table keyed by event id. It
// keeps each event once (by id), whatever number of times a device posts it, and serves
// what it holds for the fleet view (ota-release fleet).
package reports

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"sync"
	"time"
)

// Limits of a batch (the agent sends at most 100 events).
const (
	MaxBody   = 1 << 20
	MaxEvents = 1000
)

// Stored is one event as received, with the device and batch it came in.
type Stored struct {
	Device   string          `json:"device"`
	Agent    string          `json:"agent"`
	Received time.Time       `json:"received"`
	Event    json.RawMessage `json:"event"`
}

// View is what GET answers: every event once, in the order received, and per device the
// events its agents reported dropped for room.
type View struct {
	Events  []Stored         `json:"events"`
	Dropped map[string]int64 `json:"dropped"`
	Posts   int64            `json:"posts"`      // batches accepted
	Dupes   int64            `json:"duplicates"` // events received again (dropped here)
}

// Receiver keeps reports in memory. Fault knobs make it answer a status, or drip its
// answer, as a broken receiver would.
type Receiver struct {
	mu     sync.Mutex
	seen   map[string]bool
	view   View
	status int           // answer this to every POST (0: normal)
	drip   time.Duration // wait this long between bytes of the answer
}

// New is an empty receiver.
func New() *Receiver {
	return &Receiver{seen: map[string]bool{}, view: View{Events: []Stored{}, Dropped: map[string]int64{}}}
}

// SetFault makes every POST answer status (0: accept) after dripping its answer a byte per
// drip (0: at once).
func (r *Receiver) SetFault(status int, drip time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.status, r.drip = status, drip
}

// Snapshot is what the receiver holds.
func (r *Receiver) Snapshot() View {
	r.mu.Lock()
	defer r.mu.Unlock()
	v := r.view
	v.Events = append([]Stored(nil), r.view.Events...)
	v.Dropped = map[string]int64{}
	for d, n := range r.view.Dropped {
		v.Dropped[d] = n
	}
	return v
}

type batch struct {
	V       int               `json:"v"`
	Device  string            `json:"device"`
	Agent   string            `json:"agent"`
	Dropped int64             `json:"dropped"`
	Events  []json.RawMessage `json:"events"`
}

// ServeHTTP: POST takes a batch; GET answers the View (never cached: Cache-Control no-store).
func (r *Receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	switch req.Method {
	case http.MethodGet:
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(r.Snapshot())
	case http.MethodPost:
		r.mu.Lock()
		status, drip := r.status, r.drip
		r.mu.Unlock()
		if status != 0 {
			answer(w, req, status, drip, `{"error": "fault injected"}`)
			return
		}
		added, err := r.take(req.Body)
		if err != nil {
			answer(w, req, http.StatusBadRequest, 0, fmt.Sprintf(`{"error": %q}`, err.Error()))
			return
		}
		answer(w, req, http.StatusOK, drip, fmt.Sprintf(`{"accepted": %d}`, added))
	default:
		w.Header().Set("Allow", "GET, POST")
		answer(w, req, http.StatusMethodNotAllowed, 0, `{"error": "GET or POST"}`)
	}
}

// take stores a batch's events it has not seen.
func (r *Receiver) take(body io.Reader) (int, error) {
	raw, err := io.ReadAll(io.LimitReader(body, MaxBody+1))
	if err != nil || len(raw) > MaxBody {
		return 0, fmt.Errorf("a batch is at most %d bytes", MaxBody)
	}
	var b batch
	if err := json.Unmarshal(raw, &b); err != nil || b.V != 1 || b.Device == "" || len(b.Events) > MaxEvents {
		return 0, errors.New("want {v: 1, device, agent, dropped, events: [...]}")
	}
	ids := make([]string, len(b.Events))
	for i, e := range b.Events {
		var ev struct{ ID, Kind string }
		if json.Unmarshal(e, &ev) != nil || ev.ID == "" || ev.Kind == "" {
			return 0, fmt.Errorf("event %d has no id or kind", i)
		}
		ids[i] = ev.ID
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	added, now := 0, time.Now()
	for i, e := range b.Events {
		if r.seen[ids[i]] {
			r.view.Dupes++
			continue
		}
		r.seen[ids[i]] = true
		r.view.Events = append(r.view.Events, Stored{Device: b.Device, Agent: b.Agent, Received: now, Event: e})
		added++
	}
	r.view.Dropped[b.Device] += b.Dropped
	r.view.Posts++
	return added, nil
}

// answer writes body, a byte each drip when drip is set, until the client goes away.
func answer(w http.ResponseWriter, req *http.Request, status int, drip time.Duration, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if drip == 0 {
		io.WriteString(w, body)
		return
	}
	f, _ := w.(http.Flusher)
	for i := range len(body) {
		w.Write([]byte{body[i]})
		if f != nil {
			f.Flush()
		}
		select {
		case <-time.After(drip):
		case <-req.Context().Done():
			return
		}
	}
}

// Devices lists the devices that reported, sorted.
func (v View) Devices() []string {
	set := map[string]bool{}
	for _, e := range v.Events {
		set[e.Device] = true
	}
	out := make([]string, 0, len(set))
	for d := range set {
		out = append(out, d)
	}
	sort.Strings(out)
	return out
}
