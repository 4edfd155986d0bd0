// Package dbus is the little of the D-Bus wire protocol the agent needs to ask systemd to
// restart units and to read their state: SASL EXTERNAL over a unix socket, method calls
// with string arguments, and replies of the basic types, arrays, structs and variants in
// either byte order; what it cannot decode (a unix fd, an unknown type, a malformed value)
// is an error. Its tests hold it against godbus and busctl, and fuzz it. A general client (godbus, through go-systemd's dbus package)
// costs the armv7 binary 393 KB, because its reflective object export keeps every exported
// method of the program; this costs a few.
package dbus

import (
	"bufio"
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
		typ, fields, body, order, err := c.read()
		if err != nil {
			return nil, c.ctxErr(ctx, err)
		}
		if rs, _ := fields[fieldReplySerial].(uint32); rs != serial || typ != typeReturn && typ != typeError {
			continue // a signal, a Ping's answer, or an answer to nobody here
		}
		sig, _ := fields[fieldSignature].(string)
		vals, err := decodeBody(body, sig, order)
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

// read reads one message: its type, header fields, body and byte order.
func (c *Conn) read() (byte, map[byte]any, []byte, binary.ByteOrder, error) {
	var fixed [16]byte
	if _, err := io.ReadFull(c.r, fixed[:]); err != nil {
		return 0, nil, nil, nil, err
	}
	return decodeMessage(fixed, c.r)
}

// decodeMessage reads the rest of a message whose first 16 bytes are fixed from r.
func decodeMessage(fixed [16]byte, r io.Reader) (byte, map[byte]any, []byte, binary.ByteOrder, error) {
	var order binary.ByteOrder
	switch fixed[0] {
	case 'l':
		order = binary.LittleEndian
	case 'B':
		order = binary.BigEndian
	default:
		return 0, nil, nil, nil, fmt.Errorf("D-Bus: bad byte order %q", fixed[0])
	}
	if fixed[3] != 1 {
		return 0, nil, nil, nil, fmt.Errorf("D-Bus: protocol version %d (only 1 is spoken)", fixed[3])
	}
	bodyLen, fieldsLen := order.Uint32(fixed[4:]), order.Uint32(fixed[12:])
	if bodyLen > maxMessage || fieldsLen > maxMessage {
		return 0, nil, nil, nil, errors.New("D-Bus: message too large")
	}
	headerLen := (16 + int(fieldsLen) + 7) &^ 7
	raw := make([]byte, headerLen+int(bodyLen))
	copy(raw, fixed[:])
	if _, err := io.ReadFull(r, raw[16:]); err != nil {
		return 0, nil, nil, nil, err
	}
	d := &dec{b: raw[:16+int(fieldsLen)], pos: 16, order: order}
	fields := map[byte]any{}
	for d.pos < len(d.b) {
		d.align(8)
		code, err := d.byte()
		if err != nil {
			return 0, nil, nil, nil, err
		}
		v, err := d.variant()
		if err != nil {
			return 0, nil, nil, nil, err
		}
		fields[code] = v
	}
	return fixed[1], fields, raw[headerLen:], order, nil
}
