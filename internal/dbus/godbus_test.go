package dbus

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"os/exec"
	"reflect"
	"strings"
	"testing"
	"time"

	godbus "github.com/godbus/dbus/v5"
)

// sample is one value of each type the decoder reads, as godbus sends it and as Call returns it.
var sample = []struct {
	send any
	want any
}{
	{"unit.service", "unit.service"},
	{godbus.ObjectPath("/org/freedesktop/systemd1/job/42"), "/org/freedesktop/systemd1/job/42"},
	{godbus.Signature{}, ""},
	{byte(7), byte(7)},
	{true, true},
	{false, false},
	{int16(-2), int16(-2)},
	{uint16(65535), uint16(65535)},
	{int32(-3), int32(-3)},
	{uint32(4000000000), uint32(4000000000)},
	{int64(math.MinInt64), int64(math.MinInt64)},
	{uint64(math.MaxUint64), uint64(math.MaxUint64)},
	{2.5, 2.5},
	{[]byte{0xde, 0xad}, []byte{0xde, 0xad}},
	{[]string{"a", "bc"}, []any{"a", "bc"}},
	{[]int32{-1, 1}, []any{int32(-1), int32(1)}},
	{map[string]godbus.Variant{"k": godbus.MakeVariant(uint32(9))}, []any{[]any{"k", uint32(9)}}},
	{struct {
		A string
		B int64
	}{"s", -5}, []any{"s", int64(-5)}},
	{godbus.MakeVariant([]string{"x"}), []any{"x"}},
	{godbus.MakeVariant(godbus.MakeVariant(int16(-1))), int16(-1)},
}

// What godbus (a well-kept implementation) encodes, in either byte order, reads back as
// the values it sent: the header fields and every type of body.
func TestDecodeGodbusMessages(t *testing.T) {
	var body []any
	for _, s := range sample {
		body = append(body, s.send)
	}
	for _, order := range []binary.ByteOrder{binary.LittleEndian, binary.BigEndian} {
		msg := &godbus.Message{Type: godbus.TypeMethodReply, Body: body, Headers: map[godbus.HeaderField]godbus.Variant{
			godbus.FieldReplySerial: godbus.MakeVariant(uint32(77)),
			godbus.FieldSignature:   godbus.MakeVariant(godbus.SignatureOf(body...)),
		}}
		var buf bytes.Buffer
		if err := msg.EncodeTo(&buf, order); err != nil {
			t.Fatal(err)
		}
		var fixed [16]byte
		copy(fixed[:], buf.Next(16))
		typ, fields, raw, got, err := decodeMessage(fixed, &buf)
		if err != nil {
			t.Fatalf("%v: %v", order, err)
		}
		if typ != typeReturn || fields[fieldReplySerial] != uint32(77) || got != order {
			t.Fatalf("%v: type %d fields %v order %v", order, typ, fields, got)
		}
		vals, err := decodeBody(raw, fields[fieldSignature].(string), got)
		if err != nil {
			t.Fatalf("%v: body %q: %v", order, fields[fieldSignature], err)
		}
		for i, s := range sample {
			if !reflect.DeepEqual(vals[i], s.want) {
				t.Errorf("%v: %T %v read as %#v, want %#v", order, s.send, s.send, vals[i], s.want)
			}
		}
	}
}

// What this package sends, godbus reads as the method call it means.
func TestEncodeReadByGodbus(t *testing.T) {
	raw := encodeCall(5, "org.freedesktop.systemd1", "/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager", "RestartUnit", []string{"app.service", "replace"})
	msg, err := godbus.DecodeMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	h := func(f godbus.HeaderField) any { return msg.Headers[f].Value() }
	if msg.Type != godbus.TypeMethodCall || h(godbus.FieldPath) != godbus.ObjectPath("/org/freedesktop/systemd1") ||
		h(godbus.FieldInterface) != "org.freedesktop.systemd1.Manager" || h(godbus.FieldMember) != "RestartUnit" ||
		h(godbus.FieldDestination) != "org.freedesktop.systemd1" || h(godbus.FieldSignature) != godbus.ParseSignatureMust("ss") {
		t.Fatalf("headers %v", msg.Headers)
	}
	if !reflect.DeepEqual(msg.Body, []any{"app.service", "replace"}) {
		t.Fatalf("body %#v", msg.Body)
	}
}

// A unix fd, a boolean that is neither 0 nor 1, a string without its nul, another protocol
// version: refused, not guessed.
func TestRefusesWhatItCannotDecode(t *testing.T) {
	for _, c := range []struct {
		body []byte
		sig  string
	}{
		{[]byte{0, 0, 0, 0}, "h"},
		{[]byte{2, 0, 0, 0}, "b"},
		{[]byte{1, 0, 0, 0, 'a', 'x'}, "s"},
		{[]byte{2, 0, 0, 0, 'a', 0, 0}, "s"},
		{[]byte{0}, "m"},
	} {
		if v, err := decodeBody(c.body, c.sig, binary.LittleEndian); err == nil {
			t.Errorf("%q %x: decoded as %#v", c.sig, c.body, v)
		}
	}
	fixed := [16]byte{'l', typeReturn, 0, 2}
	if _, _, _, _, err := decodeMessage(fixed, bytes.NewReader(nil)); err == nil || !strings.Contains(err.Error(), "protocol version 2") {
		t.Errorf("version 2: %v", err)
	}
}

// Whatever arrives from the socket, reading it is an error or values, never a panic or an
// allocation beyond the message limit.
func FuzzDecodeMessage(f *testing.F) {
	var buf bytes.Buffer
	(&godbus.Message{Type: godbus.TypeMethodReply, Body: []any{"x", uint32(1), []string{"a"}}, Headers: map[godbus.HeaderField]godbus.Variant{
		godbus.FieldReplySerial: godbus.MakeVariant(uint32(1)),
		godbus.FieldSignature:   godbus.MakeVariant(godbus.ParseSignatureMust("suas")),
	}}).EncodeTo(&buf, binary.BigEndian)
	f.Add(buf.Bytes())
	f.Add(encodeCall(1, "d", "/p", "i.f", "M", []string{"a"}))
	f.Fuzz(func(t *testing.T, raw []byte) {
		if len(raw) < 16 {
			return
		}
		var fixed [16]byte
		copy(fixed[:], raw)
		_, fields, body, order, err := decodeMessage(fixed, bytes.NewReader(raw[16:]))
		if err != nil {
			return
		}
		sig, _ := fields[fieldSignature].(string)
		decodeBody(body, sig, order)
	})
}

// The same bus answer, read by this package and by busctl (systemd's sd-bus): the bus's
// properties agree.
func TestAgreesWithBusctl(t *testing.T) {
	busctl, err := exec.LookPath("busctl")
	if err != nil {
		t.Skip("SKIPPED: busctl is not installed (apt-get install systemd)")
	}
	sock := startBus(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, sock, true)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ours, err := c.Call(ctx, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "GetId")
	if err != nil {
		t.Fatal(err)
	}
	theirs, err := exec.CommandContext(ctx, busctl, "--address=unix:path="+sock, "call", "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "GetId").Output()
	if err != nil {
		t.Fatalf("busctl: %v", err)
	}
	if want := `s "` + ours[0].(string) + `"`; strings.TrimSpace(string(theirs)) != want {
		t.Fatalf("busctl read %q, this package %q", theirs, want)
	}
	names, err := c.Call(ctx, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "ListNames")
	if err != nil {
		t.Fatal(err)
	}
	name := names[0].([]any)[0].(string)
	has, err := c.Call(ctx, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "NameHasOwner", name)
	if err != nil {
		t.Fatal(err)
	}
	theirs, err = exec.CommandContext(ctx, busctl, "--address=unix:path="+sock, "call", "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "NameHasOwner", "s", name).Output()
	if want := fmt.Sprintf("b %v", has[0]); err != nil || strings.TrimSpace(string(theirs)) != want {
		t.Fatalf("busctl read NameHasOwner as %q (%v), this package as %q", theirs, err, want)
	}
}
