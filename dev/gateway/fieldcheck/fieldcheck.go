// Package fieldcheck rejects protobuf fields that the gateway does not know how to honour.
//
// Envoy configuration is large and istiod may set fields the gateway has never seen. The
// gateway must not silently ignore any of them: a field it does not implement could change
// the answers a client gets. So every message type the gateway reads has an allow list of
// the fields it handles (or has declared harmless, with the reason written beside the rule),
// and any other field that is set makes the whole resource rejected, with the field's path.
package fieldcheck

import (
	"fmt"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Policy says what the gateway does with one field.
type Policy int

const (
	// Walk: the field is handled, and so is every field of its value, each checked in turn
	// against the rules of its own message type.
	Walk Policy = iota + 1
	// Whole: the field is handled, or is harmless, as a whole value; its contents are not
	// checked (scalars, enums whose values the caller checks, opaque metadata).
	Whole
)

// Rules maps a message type to the fields of it that the gateway accepts.
type Rules map[protoreflect.FullName]map[protoreflect.Name]Policy

// Check walks m and returns an error naming the first set field that the rules do not allow,
// as a path from root (for example `virtual_hosts[0].routes[2].route.retry_policy`).
func (r Rules) Check(m proto.Message, root string) error {
	return r.check(m.ProtoReflect(), root)
}

func (r Rules) check(m protoreflect.Message, path string) error {
	fields, known := r[m.Descriptor().FullName()]
	if !known {
		return fmt.Errorf("%s: %s is not supported by this gateway", path, m.Descriptor().FullName())
	}
	var err error
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		p := join(path, string(fd.Name()))
		policy, ok := fields[fd.Name()]
		if !ok {
			err = fmt.Errorf("%s: field not supported by this gateway", p)
			return false
		}
		if policy == Walk && fd.Kind() == protoreflect.MessageKind {
			err = r.walkValue(fd, v, p)
		}
		return err == nil
	})
	return err
}

func (r Rules) walkValue(fd protoreflect.FieldDescriptor, v protoreflect.Value, path string) error {
	switch {
	case fd.IsList():
		l := v.List()
		for i := 0; i < l.Len(); i++ {
			if err := r.check(l.Get(i).Message(), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	case fd.IsMap():
		if fd.MapValue().Kind() != protoreflect.MessageKind {
			return nil
		}
		var err error
		v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
			err = r.check(mv.Message(), fmt.Sprintf("%s[%q]", path, k.String()))
			return err == nil
		})
		return err
	default:
		return r.check(v.Message(), path)
	}
	return nil
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// Visit calls fn on m and on every message inside it (depth first, in field order), with
// its path from root, and stops at the first error.
func Visit(m proto.Message, root string, fn func(m protoreflect.Message, path string) error) error {
	return visit(m.ProtoReflect(), root, fn)
}

func visit(m protoreflect.Message, path string, fn func(protoreflect.Message, string) error) error {
	if err := fn(m, path); err != nil {
		return err
	}
	var err error
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Kind() != protoreflect.MessageKind && fd.Kind() != protoreflect.GroupKind {
			return true
		}
		p := join(path, string(fd.Name()))
		switch {
		case fd.IsList():
			for i := 0; i < v.List().Len() && err == nil; i++ {
				err = visit(v.List().Get(i).Message(), fmt.Sprintf("%s[%d]", p, i), fn)
			}
		case fd.IsMap():
			if fd.MapValue().Kind() == protoreflect.MessageKind {
				v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
					err = visit(mv.Message(), fmt.Sprintf("%s[%q]", p, k.String()), fn)
					return err == nil
				})
			}
		default:
			err = visit(v.Message(), p, fn)
		}
		return err == nil
	})
	return err
}
