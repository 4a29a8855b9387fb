package main

import "testing"

func TestWithBind(t *testing.T) {
	in := ".:53 {\n    forward . 8.8.8.8\n}\nfoo.bar.com:53 {\n  whoami\n}\n"
	want := ".:53 {\n    bind 198.18.0.9\n    forward . 8.8.8.8\n}\nfoo.bar.com:53 {\n    bind 198.18.0.9\n  whoami\n}\n"
	if got := withBind(in, "198.18.0.9"); got != want {
		t.Fatalf("got\n%s", got)
	}
}
