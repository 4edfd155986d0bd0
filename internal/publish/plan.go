package publish

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/ota-agent/ota-agent/internal/protocol"
)

// Actions of a plan's steps.
const (
	Upload  = "upload"  // an object the bucket lacks
	Replace = "replace" // an object whose size or MD5 differs
	Put     = "put"     // a row the table lacks
	Modify  = "change"  // a row whose attributes differ
	Delete  = "delete"  // --prune: a row or an object the catalog does not name
)

// Step is one operation of a plan, in the order they run.
type Step struct {
	Action  string   `json:"action"`
	Kind    string   `json:"kind"` // binary, side, trust, row, object
	Name    string   `json:"name"` // an object key, or a row's app/env
	Size    int64    `json:"size,omitempty"`
	MD5     string   `json:"md5,omitempty"`
	WasMD5  string   `json:"was_md5,omitempty"` // the object's ETag before
	Changes []Change `json:"changes,omitempty"` // a row's attributes
	file    File
	item    Item
}

// Plan is the difference between the deployment and the catalog.
type Plan struct {
	Bucket string `json:"bucket"`
	Table  string `json:"table"`
	Steps  []Step `json:"steps"`
	// Unchanged counts what already matches; Extra what the catalog does not name and
	// stays (without --prune).
	Unchanged struct {
		Objects int `json:"objects"`
		Rows    int `json:"rows"`
	} `json:"unchanged"`
	Extra struct {
		Objects []string `json:"objects,omitempty"`
		Rows    []string `json:"rows,omitempty"`
	} `json:"extra"`
}

// InSync says whether there is nothing to do.
func (p *Plan) InSync() bool { return len(p.Steps) == 0 }

// Current is what the deployment holds.
type Current struct {
	Objects map[string]Stored
	Items   []Item
}

// Read reads the bucket's listing and the table.
func (d *Deployment) Read(ctx context.Context) (*Current, error) {
	objs, err := d.Objects(ctx)
	if err != nil {
		return nil, err
	}
	if err := d.CheckTable(ctx); err != nil {
		return nil, err
	}
	items, err := d.Items(ctx)
	if err != nil {
		return nil, err
	}
	return &Current{Objects: objs, Items: items}, nil
}

// MakePlan compares: objects by size and MD5, rows attribute by attribute; with prune the
// rows and objects the catalog does not name are deleted. It refuses a plan that would
// break devices: an unsigned row where the deployment's rows are signed, or new bytes under
// the key of a binary a live row names.
func MakePlan(want *Desired, have *Current, t Target, prune bool) (*Plan, error) {
	p := &Plan{Bucket: t.Bucket, Table: t.Table}
	live := map[string]Item{}
	for _, it := range have.Items {
		live[it.Key()] = it
	}
	if err := signedStays(want, have); err != nil {
		return nil, err
	}
	if err := p.objects(want, have); err != nil {
		return nil, err
	}
	inCatalog := map[string]bool{}
	for _, it := range want.Items {
		inCatalog[it.Key()] = true
		old, ok := live[it.Key()]
		if it.Ident == "" {
			it.Ident = old.Ident // a free label: the table's is kept
			if it.Ident == "" {
				it.Ident = it.Object()
			}
		}
		if !ok {
			p.Steps = append(p.Steps, Step{Action: Put, Kind: "row", Name: it.Key(), Changes: diff(Item{}, it), item: it})
			continue
		}
		ch := diff(old, it)
		if len(ch) == 0 {
			p.Unchanged.Rows++
			continue
		}
		p.Steps = append(p.Steps, Step{Action: Modify, Kind: "row", Name: it.Key(), Changes: ch, item: it})
	}
	p.deletions(want, have, inCatalog, prune)
	return p, nil
}

// signedStays refuses an unsigned row where the deployment's rows are signed.
func signedStays(want *Desired, have *Current) error {
	for _, old := range have.Items {
		if !old.Signed() {
			continue
		}
		for _, it := range want.Items {
			if !it.Signed() {
				return fmt.Errorf("row %s of the catalog is unsigned, but the deployment's rows are signed (%s): devices with trust keys would refuse it; sign the catalog (ota-release sign --key KEY.pem --catalog DIR) first", it.Key(), old.Key())
			}
		}
		return nil
	}
	return nil
}

// objects plans the uploads: what the bucket lacks or holds other bytes of. New bytes under
// the key of a binary a live row names are refused.
func (p *Plan) objects(want *Desired, have *Current) error {
	named := map[string]string{} // binary key → md5 named by a live row
	for _, it := range have.Items {
		named[it.Object()] = it.MD5
	}
	for _, f := range want.Files {
		if f.Size > MaxObject {
			return fmt.Errorf("%s (%s) is %d bytes: one PutObject takes at most %d, and a multipart upload's ETag is not the MD5 devices send; nothing was uploaded", f.Key, f.Path, f.Size, int64(MaxObject))
		}
		s, ok := have.Objects[f.Key]
		switch {
		case ok && s.Size == f.Size && s.MD5() == f.MD5:
			p.Unchanged.Objects++
			continue
		case ok && f.Kind == KindBinary && named[f.Key] != "" && named[f.Key] != f.MD5:
			return fmt.Errorf("%s: the catalog's bytes (md5 %s) differ from the object a live row names (md5 %s): a published version's bytes never change (devices would fetch bytes their row does not vouch for); publish them as a new version", f.Key, f.MD5, named[f.Key])
		}
		st := Step{Action: Upload, Kind: kindName(f.Kind), Name: f.Key, Size: f.Size, MD5: f.MD5, file: f}
		if ok {
			st.Action, st.WasMD5 = Replace, s.ETag
		}
		p.Steps = append(p.Steps, st)
	}
	return nil
}

// deletions plans (with prune) or lists what the catalog does not name: rows before the
// objects they may name.
func (p *Plan) deletions(want *Desired, have *Current, inCatalog map[string]bool, prune bool) {
	for _, it := range have.Items {
		if inCatalog[it.Key()] {
			continue
		}
		if !prune {
			p.Extra.Rows = append(p.Extra.Rows, it.Key())
			continue
		}
		p.Steps = append(p.Steps, Step{Action: Delete, Kind: "row", Name: it.Key(), item: it})
	}
	wanted := map[string]bool{}
	for _, f := range want.Files {
		wanted[f.Key] = true
	}
	for _, k := range slices.Sorted(maps.Keys(have.Objects)) {
		if wanted[k] {
			continue
		}
		if !prune {
			p.Extra.Objects = append(p.Extra.Objects, k)
			continue
		}
		p.Steps = append(p.Steps, Step{Action: Delete, Kind: "object", Name: k, Size: have.Objects[k].Size, WasMD5: have.Objects[k].ETag})
	}
	slices.Sort(p.Extra.Rows)
}

func kindName(k int) string {
	return [...]string{"binary", "side", "trust"}[k]
}

// Print writes the plan as one table, in the order its steps run.
func (p *Plan) Print(w io.Writer) {
	fmt.Fprintf(w, "deployment: bucket %s, table %s\n", p.Bucket, p.Table)
	if p.InSync() {
		fmt.Fprintf(w, "in sync: nothing to do (%d objects, %d rows unchanged)\n", p.Unchanged.Objects, p.Unchanged.Rows)
	} else {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "STEP\tACTION\tKIND\tNAME\tDETAIL")
		for i, s := range p.Steps {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", i+1, s.Action, s.Kind, s.Name, s.detail())
		}
		tw.Flush()
		fmt.Fprintf(w, "%d steps; unchanged: %d objects, %d rows\n", len(p.Steps), p.Unchanged.Objects, p.Unchanged.Rows)
	}
	if n, m := len(p.Extra.Rows), len(p.Extra.Objects); n+m > 0 {
		fmt.Fprintf(w, "not in the catalog, kept: %d rows %s, %d objects (--prune deletes them)\n", n, strings.Join(p.Extra.Rows, " "), m)
	}
}

func (s Step) detail() string {
	switch {
	case s.Kind == "row" && s.Action == Delete:
		return "version " + s.item.Version
	case s.Kind == "row":
		var parts []string
		for _, c := range s.Changes {
			parts = append(parts, c.text(s.Action == Put))
		}
		return strings.Join(parts, "; ")
	case s.Action == Delete:
		return protocol.HumanBytes(s.Size)
	case s.Action == Replace:
		return fmt.Sprintf("%s, md5 %s (was ETag %s)", protocol.HumanBytes(s.Size), s.MD5, s.WasMD5)
	}
	return fmt.Sprintf("%s, md5 %s", protocol.HumanBytes(s.Size), s.MD5)
}

// text is one attribute's change; long values (the signed statement) are shortened to the
// MD5 of their text.
func (c Change) text(fresh bool) string {
	short := func(v string) string {
		if len(v) <= 40 {
			return v
		}
		h := md5.Sum([]byte(v))
		return fmt.Sprintf("<%d bytes, md5 %s>", len(v), hex.EncodeToString(h[:4]))
	}
	switch {
	case fresh:
		return c.Field + " " + short(c.To)
	case c.To == "":
		return c.Field + " removed"
	case c.From == "":
		return c.Field + " " + short(c.To) + " (new)"
	}
	return c.Field + " " + short(c.From) + " → " + short(c.To)
}
