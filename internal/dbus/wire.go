package dbus

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// The reading half of the wire format: values of a body or a header field, by signature.

// decodeBody reads the values of a body with signature sig, in the message's byte order.
// The Go types: y byte, b bool, n int16, q uint16, i int32, u uint32, x int64, t uint64,
// d float64, s o g string, ay []byte, other arrays and structs []any, v the value it holds.
// A unix fd (h) or a type this does not know is an error, never a guess.
func decodeBody(body []byte, sig string, order binary.ByteOrder) ([]any, error) {
	d := &dec{b: body, order: order}
	var out []any
	for sig != "" {
		one, rest, err := nextType(sig)
		if err != nil {
			return nil, err
		}
		v, err := d.value(one)
		if err != nil {
			return nil, err
		}
		out, sig = append(out, v), rest
	}
	return out, nil
}

// nextType splits the first complete type off a signature.
func nextType(sig string) (string, string, error) {
	if sig == "" {
		return "", "", errors.New("D-Bus: empty signature")
	}
	switch sig[0] {
	case 'a':
		t, rest, err := nextType(sig[1:])
		if err != nil {
			return "", "", fmt.Errorf("D-Bus: bad signature %q", sig)
		}
		return "a" + t, rest, nil
	case '(', '{':
		closer := map[byte]byte{'(': ')', '{': '}'}[sig[0]]
		depth := 0
		for i := 0; i < len(sig); i++ {
			switch sig[i] {
			case '(', '{':
				depth++
			case ')', '}':
				depth--
			}
			if depth == 0 {
				if sig[i] != closer {
					return "", "", fmt.Errorf("D-Bus: bad signature %q", sig)
				}
				return sig[:i+1], sig[i+1:], nil
			}
		}
		return "", "", fmt.Errorf("D-Bus: bad signature %q", sig)
	}
	return sig[:1], sig[1:], nil
}

// dec reads aligned values.
type dec struct {
	b     []byte
	pos   int
	order binary.ByteOrder
	depth int
}

var errShort = errors.New("D-Bus: message ends early")

func (d *dec) align(n int) { d.pos = (d.pos + n - 1) &^ (n - 1) }

func (d *dec) take(n int) ([]byte, error) {
	if n < 0 || d.pos+n > len(d.b) {
		return nil, errShort
	}
	p := d.b[d.pos : d.pos+n]
	d.pos += n
	return p, nil
}

func (d *dec) byte() (byte, error) {
	p, err := d.take(1)
	if err != nil {
		return 0, err
	}
	return p[0], nil
}

func (d *dec) u32() (uint32, error) {
	d.align(4)
	p, err := d.take(4)
	if err != nil {
		return 0, err
	}
	return d.order.Uint32(p), nil
}

func (d *dec) str(lenSize int) (string, error) {
	var n uint32
	var err error
	if lenSize == 1 {
		var b byte
		b, err = d.byte()
		n = uint32(b)
	} else {
		n, err = d.u32()
	}
	if err != nil {
		return "", err
	}
	p, err := d.take(int(n) + 1)
	if err != nil {
		return "", err
	}
	if p[n] != 0 || bytes.IndexByte(p[:n], 0) >= 0 {
		return "", errors.New("D-Bus: a string is not nul-terminated, or holds a nul")
	}
	return string(p[:n]), nil
}

func (d *dec) variant() (any, error) {
	sig, err := d.str(1)
	if err != nil {
		return nil, err
	}
	one, rest, err := nextType(sig)
	if err != nil || rest != "" {
		return nil, fmt.Errorf("D-Bus: a variant's signature %q is not one complete type", sig)
	}
	return d.value(one)
}

// value reads one value of the complete type t.
func (d *dec) value(t string) (any, error) {
	if d.depth++; d.depth > 32 {
		return nil, errors.New("D-Bus: values nested too deep")
	}
	defer func() { d.depth-- }()
	switch t[0] {
	case 'y':
		return d.byte()
	case 'b':
		v, err := d.u32()
		if err == nil && v > 1 {
			err = fmt.Errorf("D-Bus: boolean %d is neither 0 nor 1", v)
		}
		return v == 1, err
	case 'u':
		return d.u32()
	case 'i':
		v, err := d.u32()
		return int32(v), err
	case 'n', 'q':
		d.align(2)
		p, err := d.take(2)
		if err != nil {
			return nil, err
		}
		if t[0] == 'n' {
			return int16(d.order.Uint16(p)), nil
		}
		return d.order.Uint16(p), nil
	case 'x', 't', 'd':
		d.align(8)
		p, err := d.take(8)
		if err != nil {
			return nil, err
		}
		v := d.order.Uint64(p)
		switch t[0] {
		case 'x':
			return int64(v), nil
		case 'd':
			return math.Float64frombits(v), nil
		}
		return v, nil
	case 's', 'o':
		return d.str(4)
	case 'g':
		return d.str(1)
	case 'v':
		return d.variant()
	case 'a':
		return d.array(t[1:])
	case '(', '{':
		d.align(8)
		var out []any
		for inner := t[1 : len(t)-1]; inner != ""; {
			one, rest, err := nextType(inner)
			if err != nil {
				return nil, err
			}
			v, err := d.value(one)
			if err != nil {
				return nil, err
			}
			out, inner = append(out, v), rest
		}
		return out, nil
	}
	return nil, fmt.Errorf("D-Bus: type %q not understood", t)
}

func (d *dec) array(elem string) (any, error) {
	n, err := d.u32()
	if err != nil {
		return nil, err
	}
	if elem == "y" {
		p, err := d.take(int(n))
		return bytes.Clone(p), err
	}
	switch elem[0] {
	case 'x', 't', 'd', '(', '{':
		d.align(8)
	}
	end := d.pos + int(n)
	if n > maxMessage || end > len(d.b) {
		return nil, errShort
	}
	var out []any
	for d.pos < end {
		v, err := d.value(elem)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}
