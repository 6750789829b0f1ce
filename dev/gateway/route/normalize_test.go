package route

import "testing"

func TestNormalizePath(t *testing.T) {
	cases := []struct {
		in          string
		merge       bool
		want        string
		description string
	}{
		{"/a/b", false, "/a/b", "nothing to do"},
		{"/a/./b", false, "/a/b", "dot"},
		{"/a/../b", false, "/b", "dot-dot"},
		{"/../../x", false, "/x", "dot-dot above the root"},
		{"/a/b/..", false, "/a/", "trailing dot-dot"},
		{"/a/.", false, "/a/", "trailing dot"},
		{"/a/..b/c", false, "/a/..b/c", "dots inside a segment"},
		{"/a//b", false, "/a//b", "slashes kept"},
		{"/a//b///c", true, "/a/b/c", "slashes merged"},
		{"/a/../b?x=/../y", false, "/b?x=/../y", "query untouched"},
	}
	for _, c := range cases {
		if got := NormalizePath(c.in, true, c.merge); got != c.want {
			t.Errorf("%s: NormalizePath(%q) = %q, want %q", c.description, c.in, got, c.want)
		}
	}
	if got := NormalizePath("/a/../b", false, false); got != "/a/../b" {
		t.Errorf("normalisation off: %q", got)
	}
}
