package sdk

import (
	"fmt"
	"testing"
)

func TestReadHeaders(t *testing.T) {
	for _, c := range []struct{ body, want string }{
		{"", "[]"},
		{"\r\n\r\n", "[]"},
		{"A: 1\r\nb:2\r\n", "[[{A 1 1} {B 2 2}]]"},
		{"voice-MESSAGE: 1/0\nx-2a-b: y\nÉté-x: z", "[[{Voice-Message 1/0 1} {X-2a-B y 2} {Été-X z 3}]]"},
		{"\nA: 1\n\n\nSubject: hi: there \nTo:\n", "[[{A 1 2}] [{Subject hi: there 5} {To  6}]]"},
		{" A\t: 1", "[[{A 1 1}]]"},
	} {
		got, err := ReadHeaders([]byte(c.body))
		if s := fmt.Sprint(got); err != nil || s != c.want {
			t.Errorf("%q: %s %v; want %s", c.body, s, err, c.want)
		}
	}
	for body, want := range map[string]string{
		"A: 1\r\nB 2\r\n":  `400 line 2: "B 2" is not a header line (Name: value)`,
		"A: 1\n\n: 2":      `400 line 3: ": 2" is not a header line (Name: value)`,
		"Voice Message: 1": `400 line 1: "Voice Message: 1" is not a header line (Name: value)`,
		"A: 1\n  \n":       `400 line 2: "  " is not a header line (Name: value)`,
	} {
		_, err := ReadHeaders([]byte(body))
		if _, ok := err.(*Rejection); !ok || err.Error() != want {
			t.Errorf("%q: %v; want %s", body, err, want)
		}
	}
}
