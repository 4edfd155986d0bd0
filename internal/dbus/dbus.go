// Package dbus is the little of the D-Bus wire protocol the agent needs to ask systemd to
// restart units and to read their state: SASL EXTERNAL over a unix socket, method calls
// with string arguments, and replies holding strings, object paths, unsigned integers, byte
// arrays and variants of those. A general client (godbus, through go-systemd's dbus package)
// costs the armv7 binary 393 KB, because its reflective object export keeps every exported
// method of the program; this costs a few.
package dbus

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Conn is one authenticated connection; calls are serialised.
type Conn struct {
	mu     sync.Mutex // one call at a time
	wmu    sync.Mutex // one write at a time, and the serial
	c      net.Conn
	r      *bufio.Reader
	serial uint32
}

// nudge is how long a call waits for its reply before pinging the peer. systemd's private
// socket can leave a message that arrived in the same read as the end of authentication
// unprocessed until more bytes come (seen at boot, when it is busy): a Ping is such bytes,
// and its answer is skipped.
const nudge = 500 * time.Millisecond

// Error is a D-Bus error reply.
type Error struct {
	Name, Message string
}

func (e *Error) Error() string {
	if e.Message != "" {
		return e.Message
	}
	return e.Name
}

// Dial connects to the unix socket at path and authenticates as this process's uid; with
// hello it also says Hello (a bus daemon wants it; systemd's private socket does not).
func Dial(ctx context.Context, path string, hello bool) (*Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	conn := &Conn{c: c, r: bufio.NewReader(c)}
	if err := conn.auth(); err != nil {
		c.Close()
		return nil, fmt.Errorf("D-Bus authentication on %s: %w", path, err)
	}
	if hello {
		if _, err := conn.Call(ctx, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "Hello"); err != nil {
			c.Close()
			return nil, err
		}
	}
	c.SetDeadline(time.Time{})
	return conn, nil
}

func (c *Conn) auth() error {
	uid := strconv.Itoa(os.Getuid())
	if _, err := fmt.Fprintf(c.c, "\x00AUTH EXTERNAL %s\r\n", hex.EncodeToString([]byte(uid))); err != nil {
		return err
	}
	line, err := c.r.ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "OK ") {
		return fmt.Errorf("refused: %q", strings.TrimSpace(line))
	}
	_, err = io.WriteString(c.c, "BEGIN\r\n")
	return err
}

// Close ends the connection.
func (c *Conn) Close() error { return c.c.Close() }

// Message types and header fields (D-Bus specification, "Message Format").
const (
	typeCall   = 1
	typeReturn = 2
	typeError  = 3

	fieldPath        = 1
	fieldInterface   = 2
	fieldMember      = 3
	fieldErrorName   = 4
	fieldReplySerial = 5
	fieldDestination = 6
	fieldSignature   = 8

	maxMessage = 1 << 20
)

// Call calls method on the object and returns the reply's body values (string, uint32,
// []byte, or []any for structs and arrays of those), with string arguments only.
func (c *Conn) Call(ctx context.Context, dest, path, iface, method string, args ...string) ([]any, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if dl, ok := ctx.Deadline(); ok {
		c.c.SetDeadline(dl)
		defer c.c.SetDeadline(time.Time{})
	}
	stop := context.AfterFunc(ctx, func() { c.c.SetDeadline(time.Now()) })
	defer stop()
	serial, err := c.send(dest, path, iface, method, args)
	if err != nil {
		return nil, c.ctxErr(ctx, err)
	}
	answered := make(chan struct{})
	defer close(answered)
	go func() {
		for t := time.NewTicker(nudge); ; {
			select {
			case <-answered:
				t.Stop()
				return
			case <-t.C:
				c.send(dest, path, "org.freedesktop.DBus.Peer", "Ping", nil)
			}
		}
	}()
	for {
		typ, fields, body, err := c.read()
		if err != nil {
			return nil, c.ctxErr(ctx, err)
		}
		if rs, _ := fields[fieldReplySerial].(uint32); rs != serial || typ != typeReturn && typ != typeError {
			continue // a signal, a Ping's answer, or an answer to nobody here
		}
		sig, _ := fields[fieldSignature].(string)
		vals, err := decodeBody(body, sig)
		if err != nil {
			return nil, err
		}
		if typ == typeError {
			e := &Error{}
			e.Name, _ = fields[fieldErrorName].(string)
			if len(vals) > 0 {
				e.Message, _ = vals[0].(string)
			}
			return nil, e
		}
		return vals, nil
	}
}

// send writes one method call and returns its serial.
func (c *Conn) send(dest, path, iface, method string, args []string) (uint32, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.serial++
	_, err := c.c.Write(encodeCall(c.serial, dest, path, iface, method, args))
	return c.serial, err
}

func (c *Conn) ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// encodeCall builds a little-endian method call with string arguments.
func encodeCall(serial uint32, dest, path, iface, method string, args []string) []byte {
	var body enc
	for _, a := range args {
		body.str(a)
	}
	var h enc
	h.b = append(h.b, 'l', typeCall, 0, 1)
	h.u32(uint32(len(body.b)))
	h.u32(serial)
	var fields enc
	fields.off = 16 // the array's elements are aligned as in the whole message
	field := func(code byte, sig string, val string) {
		fields.align(8)
		fields.b = append(fields.b, code)
		fields.sig(sig)
		if sig == "g" {
			fields.sig(val)
		} else {
			fields.str(val)
		}
	}
	field(fieldPath, "o", path)
	field(fieldInterface, "s", iface)
	field(fieldMember, "s", method)
	if dest != "" {
		field(fieldDestination, "s", dest)
	}
	if len(args) > 0 {
		field(fieldSignature, "g", strings.Repeat("s", len(args)))
	}
	h.u32(uint32(len(fields.b)))
	h.b = append(h.b, fields.b...)
	h.off = 0
	h.align(8)
	return append(h.b, body.b...)
}

// enc appends aligned little-endian values; off is where b starts in the message.
type enc struct {
	b   []byte
	off int
}

func (e *enc) align(n int) {
	for (e.off+len(e.b))%n != 0 {
		e.b = append(e.b, 0)
	}
}

func (e *enc) u32(v uint32) {
	e.align(4)
	e.b = binary.LittleEndian.AppendUint32(e.b, v)
}

func (e *enc) str(s string) {
	e.u32(uint32(len(s)))
	e.b = append(append(e.b, s...), 0)
}

func (e *enc) sig(s string) { e.b = append(append(append(e.b, byte(len(s))), s...), 0) }

// read reads one message: its type, header fields and body.
func (c *Conn) read() (byte, map[byte]any, []byte, error) {
	var fixed [16]byte
	if _, err := io.ReadFull(c.r, fixed[:]); err != nil {
		return 0, nil, nil, err
	}
	var order binary.ByteOrder = binary.LittleEndian
	if fixed[0] == 'B' {
		order = binary.BigEndian
	} else if fixed[0] != 'l' {
		return 0, nil, nil, fmt.Errorf("D-Bus: bad byte order %q", fixed[0])
	}
	bodyLen, fieldsLen := order.Uint32(fixed[4:]), order.Uint32(fixed[12:])
	if bodyLen > maxMessage || fieldsLen > maxMessage {
		return 0, nil, nil, errors.New("D-Bus: message too large")
	}
	headerLen := (16 + int(fieldsLen) + 7) &^ 7
	raw := make([]byte, headerLen+int(bodyLen))
	copy(raw, fixed[:])
	if _, err := io.ReadFull(c.r, raw[16:]); err != nil {
		return 0, nil, nil, err
	}
	d := &dec{b: raw[:16+int(fieldsLen)], pos: 16, order: order}
	fields := map[byte]any{}
	for d.pos < len(d.b) {
		d.align(8)
		code, err := d.byte()
		if err != nil {
			return 0, nil, nil, err
		}
		v, err := d.variant()
		if err != nil {
			return 0, nil, nil, err
		}
		fields[code] = v
	}
	return fixed[1], fields, raw[headerLen:], nil
}

// decodeBody reads the values of a body with signature sig (little- or big-endian bodies
// are both read little-endian: systemd and dbus-daemon send little-endian to a
// little-endian caller, which is what ARM and x86 Linux are).
func decodeBody(body []byte, sig string) ([]any, error) {
	d := &dec{b: body, order: binary.LittleEndian}
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
		return "a" + t, rest, err
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
	return string(p[:n]), nil
}

func (d *dec) variant() (any, error) {
	sig, err := d.str(1)
	if err != nil {
		return nil, err
	}
	return d.value(sig)
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
	case 'b', 'u', 'i':
		return d.u32()
	case 'n', 'q':
		d.align(2)
		p, err := d.take(2)
		if err != nil {
			return nil, err
		}
		return uint32(d.order.Uint16(p)), nil
	case 'x', 't', 'd':
		d.align(8)
		p, err := d.take(8)
		if err != nil {
			return nil, err
		}
		return d.order.Uint64(p), nil
	case 's', 'o':
		return d.str(4)
	case 'g':
		return d.str(1)
	case 'v':
		return d.variant()
	case 'h':
		return d.u32()
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
