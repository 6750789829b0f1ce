package route

import "strings"

// NormalizePath is the connection manager's path normalisation, applied before routing:
// with normalize_path (istiod's default) the `.` and `..` segments of the path are resolved
// as RFC 3986 section 5.2.4 says; with merge_slashes, runs of `/` become one. The query is
// left alone. (Envoy's canonicaliser also resolves percent-encoded dots and decodes a few
// escapes; those cases are not modelled.)
func NormalizePath(path string, normalize, mergeSlashes bool) string {
	p := pathOnly(path)
	rest := path[len(p):]
	if mergeSlashes {
		for strings.Contains(p, "//") {
			p = strings.ReplaceAll(p, "//", "/")
		}
	}
	if normalize {
		p = removeDotSegments(p)
	}
	return p + rest
}

func removeDotSegments(p string) string {
	if !strings.Contains(p, ".") {
		return p
	}
	segs := strings.Split(p, "/")
	out := make([]string, 0, len(segs))
	for i, s := range segs {
		last := i == len(segs)-1
		switch s {
		case ".":
			if last {
				out = append(out, "")
			}
		case "..":
			if len(out) > 1 {
				out = out[:len(out)-1]
			}
			if last {
				out = append(out, "")
			}
		default:
			out = append(out, s)
		}
	}
	res := strings.Join(out, "/")
	if !strings.HasPrefix(res, "/") {
		res = "/" + res
	}
	return res
}
