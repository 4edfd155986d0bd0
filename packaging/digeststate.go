package packaging

import (
	"encoding"
	"encoding/binary"
	"errors"
	"fmt"
)

// A Digester's state can be saved after any write and a new Digester resumed from it, so a
// transfer cut by a power failure goes on hashing from where its bytes were last flushed
// instead of reading them again (the OS image streamed into its partition).

// Len is how many bytes were written.
func (d *Digester) Len() int64 { return d.n }

// State is the Digester's state after everything written so far: the byte count, then the
// SHA-256 state, then the MD5 state when it hashes MD5. It waits for MD5's goroutine to
// catch up; the Digester takes more writes after.
func (d *Digester) State() ([]byte, error) {
	if d.work != nil {
		if len(d.batch) > 0 {
			d.work <- d.batch
		} else {
			d.free <- d.batch
		}
		// Every buffer back in the free list: the goroutine has hashed them all.
		bufs := [3][]byte{<-d.free, <-d.free, <-d.free}
		d.free <- bufs[1]
		d.free <- bufs[2]
		d.batch = bufs[0][:0]
	}
	sha, err := d.sha.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		return nil, err
	}
	out := binary.BigEndian.AppendUint64(nil, uint64(d.n))
	out = binary.BigEndian.AppendUint16(out, uint16(len(sha)))
	out = append(out, sha...)
	if d.md5 != nil {
		m, err := d.md5.(encoding.BinaryMarshaler).MarshalBinary()
		if err != nil {
			return nil, err
		}
		out = append(out, m...)
	}
	return out, nil
}

// ResumeDigester is a Digester that goes on from state (Digester.State), hashing MD5 too when
// withMD5; a state that is not one (or was saved without MD5 when MD5 is wanted) is an error.
func ResumeDigester(state []byte, withMD5 bool) (*Digester, error) {
	bad := errors.New("not a saved hash state")
	if len(state) < 10 {
		return nil, bad
	}
	n := int64(binary.BigEndian.Uint64(state))
	k := int(binary.BigEndian.Uint16(state[8:]))
	if n < 0 || len(state) < 10+k {
		return nil, bad
	}
	d := NewDigesterFor(withMD5)
	err := d.sha.(encoding.BinaryUnmarshaler).UnmarshalBinary(state[10 : 10+k])
	if err == nil && withMD5 {
		err = d.md5.(encoding.BinaryUnmarshaler).UnmarshalBinary(state[10+k:])
	}
	if err != nil {
		d.Sum()
		return nil, fmt.Errorf("%w: %v", bad, err)
	}
	d.n = n
	return d, nil
}
