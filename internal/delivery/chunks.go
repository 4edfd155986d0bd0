package delivery

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/ota-agent/ota-agent/installer"
	"github.com/ota-agent/ota-agent/internal/protocol"
	"github.com/ota-agent/ota-agent/internal/transport"
	"github.com/ota-agent/ota-agent/internal/trust"
	"github.com/ota-agent/ota-agent/packaging"
)

// Chunk indexes (protocol.md 3.5) for what a patch does not suit (files over delta.max_source,
// the OS image on a partition): `<binary>.chunks` lists the new file's content-defined
// chunks; the device cuts what it holds the same way, copies every chunk it has (re-hashing
// it as it is read) and fetches the rest with Range requests on the new file, one per run of
// missing chunks. Untrusted transport: any failure falls back to the whole file.

// errFallBack: the chunk path cannot finish; the whole file is fetched instead.
var errFallBack = errors.New("fall back to the whole file")

// chunked is the chunk strategy: downloads/<member> assembled from the chunks the device
// holds and Range fetches of the rest, when an index is published. Network failures are
// returned: the assembled prefix is kept and the next check goes on from it.
func (a *Fetcher) chunked(ctx context.Context, item PlanItem, e packaging.Entry, have installer.App, st *installer.Staging) (packaging.Digests, int64, error) {
	var none packaging.Digests
	if e.MD5 == "" {
		return none, 0, skip("no MD5 (the ETag a Range request names)")
	}
	src, err := a.proto.FirmwareURL(item.App, e, "")
	if err != nil {
		return none, 0, refused("no place for the file", err)
	}
	idxURL, err := a.patchURL(item.App, e, packaging.ChunkSuffix)
	if err != nil {
		return none, 0, refused("no place for a chunk index", err)
	}
	body, _, _, err := transport.FetchSmall(ctx, a.http, idxURL, "", packaging.MaxChunkIndex)
	n := int64(len(body))
	switch {
	case errors.Is(err, transport.ErrNotPublished):
		return none, n, skip("no chunk index published")
	case err != nil:
		return none, n, err
	}
	idx, err := packaging.ParseChunkIndex(bytes.NewReader(body), e.Size)
	if err != nil {
		return none, n, refused("chunk index refused", err)
	}
	local, size, closeLocal, err := a.localFile(item.App, have)
	if err != nil {
		return none, n, refused("cannot read the installed copy", err)
	}
	defer closeLocal()
	mine, err := a.localChunks(have.SHA256, local, size)
	if err != nil {
		return none, n, refused("cannot cut the installed copy into chunks", err)
	}
	held := map[string]packaging.Chunk{}
	for _, c := range mine.Chunks {
		held[c.SHA256] = c
	}
	if missing := missingBytes(idx, held); missing*2 > e.Size {
		return none, n, skip(fmt.Sprintf("most of the file changed (%d of %d bytes missing)", missing, e.Size))
	}
	if a.isOS(item.App) {
		return a.chunksToOS(ctx, item, e, idx, held, local, src, n)
	}
	got, err := a.assemble(ctx, item, e, idx, held, local, src)
	n += got
	switch {
	case errors.Is(err, errFallBack):
		a.dropDownload(item.Member())
		return none, n, refused("chunked transfer refused", err)
	case err != nil:
		return none, n, err
	}
	name := "downloads/" + item.Member()
	d, err := a.slots.Digest(name, a.hashMD5)
	if err != nil {
		return none, n, err
	}
	if bad := trust.Matches(e.Size, e.SHA256, e.MD5, d); bad != "" {
		a.dropDownload(item.Member())
		return none, n, refused("the chunked result differs from the release", errors.New(bad))
	}
	a.log.Info("assembled from chunks", "app", item.App, "version", item.Version, "downloaded", got, "size", e.Size, "chunks", len(idx.Chunks))
	return d, n, st.Adopt(name, incoming(item.Member()))
}

// chunksToOS writes the OS image's chunks straight into its partition (from the first one
// again after a cut: held chunks are copies, missing runs are fetched again).
func (a *Fetcher) chunksToOS(ctx context.Context, item PlanItem, e packaging.Entry, idx *packaging.ChunkIndex, held map[string]packaging.Chunk, local io.ReaderAt, src string, n int64) (packaging.Digests, int64, error) {
	var none packaging.Digests
	s, err := a.openOS(item.Member(), Progress{SHA256: e.SHA256, MD5: e.MD5, Size: e.Size}, nil, 0)
	if err != nil {
		return none, n, err
	}
	got, err := a.writeChunks(ctx, item, e, idx, held, local, src, 0, s)
	n += got
	switch {
	case errors.Is(err, errFallBack):
		s.Abort()
		return none, n, refused("chunked transfer refused", err)
	case err != nil:
		s.Abort()
		return none, n, err
	}
	d, err := a.finishOS(s)
	if err != nil {
		return none, n, err
	}
	if bad := trust.Matches(e.Size, e.SHA256, e.MD5, d); bad != "" {
		return none, n, refused("the chunked result differs from the release", errors.New(bad))
	}
	a.log.Info("assembled from chunks into OS slot "+a.written.Slot, "app", item.App, "version", item.Version, "downloaded", got, "size", e.Size, "chunks", len(idx.Chunks))
	return d, n, nil
}

// missingBytes is how much of the file the index lists that the device does not hold.
func missingBytes(idx *packaging.ChunkIndex, held map[string]packaging.Chunk) int64 {
	var missing int64
	for _, c := range idx.Chunks {
		if _, ok := held[c.SHA256]; !ok {
			missing += c.Len
		}
	}
	return missing
}

// localChunks is the chunk list of the file the device holds: cached in bbolt by its
// SHA-256 (cutting a large image costs a read of all of it); its chunks are re-hashed as
// they are read, so a copy damaged since is caught then.
func (a *Fetcher) localChunks(sha string, local io.ReaderAt, size int64) (*packaging.ChunkIndex, error) {
	var idx packaging.ChunkIndex
	if raw, _ := a.db.ChunkList(sha); raw != nil && json.Unmarshal(raw, &idx) == nil && idx.Size == size {
		return &idx, nil
	}
	fresh, err := packaging.ChunkFile(io.NewSectionReader(local, 0, size))
	if err != nil {
		return nil, err
	}
	if raw, err := json.Marshal(fresh); err == nil {
		if err := a.db.SetChunkList(sha, raw); err != nil {
			a.log.Warn("could not keep the chunk list of an installed file (it is computed again next time)", "err", err)
		}
	}
	return fresh, nil
}

// localFile is what the device holds of app: the file in the slot carried from, or the
// booted OS partition's first have.Size bytes.
func (a *Fetcher) localFile(app string, have installer.App) (io.ReaderAt, int64, func(), error) {
	if a.isOS(app) {
		parts := a.os.Parts
		env, err := parts.Env.Read()
		if err != nil {
			return nil, 0, nil, err
		}
		f, err := os.Open(parts.Devices[parts.Booted(env)])
		if err != nil {
			return nil, 0, nil, err
		}
		return f, have.Size, func() { f.Close() }, nil
	}
	root, err := a.slots.Root()
	if err != nil {
		return nil, 0, nil, err
	}
	f, err := root.Open("slots/" + a.from + "/" + app)
	if err != nil {
		return nil, 0, nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, nil, err
	}
	return f, fi.Size(), func() { f.Close() }, nil
}

// assemble writes the new file into downloads/<member> in order: held chunks from local
// (re-hashed; a damaged one is fetched), missing runs with one Range request each. A prefix
// left by an earlier run is re-hashed and kept up to its first bad chunk.
func (a *Fetcher) assemble(ctx context.Context, item PlanItem, e packaging.Entry, idx *packaging.ChunkIndex, held map[string]packaging.Chunk, local io.ReaderAt, src string) (int64, error) {
	root, err := a.slots.Root()
	if err != nil {
		return 0, err
	}
	member := item.Member()
	name := "downloads/" + member
	prog, _ := a.db.Progress(member)
	if prog == nil || prog.SHA256 != e.SHA256 || prog.URL != protocol.DeliveryChunks {
		root.Remove(name)
		prog = &Progress{SHA256: e.SHA256, MD5: e.MD5, Size: e.Size, URL: protocol.DeliveryChunks}
		if err := a.db.SetProgress(member, prog); err != nil {
			return 0, err
		}
	}
	f, err := root.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	start := idx.KeptPrefix(f)
	if err := f.Truncate(idx.OffsetOf(start)); err != nil {
		return 0, err
	}
	if _, err := f.Seek(idx.OffsetOf(start), io.SeekStart); err != nil {
		return 0, err
	}
	fetched, err := a.writeChunks(ctx, item, e, idx, held, local, src, start, f)
	if err != nil {
		return fetched, err
	}
	return fetched, f.Sync()
}

// writeChunks writes the new file's chunks from start on into w, in order: held chunks from
// local (re-hashed; a damaged one is fetched), missing runs with one Range request each.
func (a *Fetcher) writeChunks(ctx context.Context, item PlanItem, e packaging.Entry, idx *packaging.ChunkIndex, held map[string]packaging.Chunk, local io.ReaderAt, src string, start int, w io.Writer) (int64, error) {
	var fetched int64
	buf := make([]byte, packaging.ChunkMax)
	for i := start; i < len(idx.Chunks); {
		c := idx.Chunks[i]
		if h, ok := held[c.SHA256]; ok {
			if _, err := local.ReadAt(buf[:h.Len], h.Off); err == nil && packaging.SHA256Hex(buf[:h.Len]) == c.SHA256 {
				if _, err := w.Write(buf[:h.Len]); err != nil {
					return fetched, err
				}
				i++
				continue
			}
			a.log.Warn("a chunk of the installed copy is damaged; fetching it", "app", item.App, "offset", h.Off)
			delete(held, c.SHA256)
		}
		end := i + 1
		for end < len(idx.Chunks) && !has(held, idx.Chunks[end]) {
			end++
		}
		got, err := a.fetchChunks(ctx, src, e.MD5, idx.Chunks[i:end], w, buf)
		fetched += got
		if err != nil {
			return fetched, err
		}
		i = end
	}
	return fetched, nil
}

func has(held map[string]packaging.Chunk, c packaging.Chunk) bool {
	_, ok := held[c.SHA256]
	return ok
}

// fetchChunks gets one run of chunks with one Range request (If-Range: the release's S3
// ETag) and writes each after checking its hash.
func (a *Fetcher) fetchChunks(ctx context.Context, src, md5 string, run []packaging.Chunk, w io.Writer, buf []byte) (int64, error) {
	from, to := run[0].Off, run[len(run)-1].Off+run[len(run)-1].Len
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, src, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", from, to-1))
	req.Header.Set("If-Range", `"`+md5+`"`)
	resp, err := a.http.Do(req)
	if err != nil {
		return 0, netError("range of "+transport.Redact(src), err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent || !strings.HasPrefix(resp.Header.Get("Content-Range"), fmt.Sprintf("bytes %d-%d/", from, to-1)) {
		return 0, fmt.Errorf("%w: the server answered %s (Content-Range %q) to bytes %d-%d", errFallBack, resp.Status, resp.Header.Get("Content-Range"), from, to-1)
	}
	var n int64
	for _, c := range run {
		k, err := io.ReadFull(resp.Body, buf[:c.Len])
		n += int64(k)
		if err != nil {
			return n, netError("range of "+transport.Redact(src), err)
		}
		if packaging.SHA256Hex(buf[:c.Len]) != c.SHA256 {
			return n, fmt.Errorf("%w: the chunk at %d does not hash as the index says", errFallBack, c.Off)
		}
		if _, err := w.Write(buf[:c.Len]); err != nil {
			return n, err
		}
	}
	return n, nil
}
