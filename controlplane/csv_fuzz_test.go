package controlplane

import (
	"bytes"
	"reflect"
	"testing"
)

// FuzzBridgeCSV: whatever file an administrator imports, parsing never
// panics, every bridge it accepts is valid, and the accepted bridges
// written back out parse to exactly the same registry.
func FuzzBridgeCSV(f *testing.F) {
	f.Add([]byte("id,name,kind,area,contact\ncommune-001,Commune 001,commune,Ba Dinh,+84 24 1\n"))
	f.Add([]byte("id,name,kind,area,contact\nhub,Hub,hub,,\n"))
	f.Add([]byte("id,name,kind\nBAD ID,x,ward\nward-1,\"quoted, name\",ward\n"))
	f.Add([]byte("\xef\xbb\xbfid,name,kind,area,contact\r\nward-2,Phường 2,ward,Hoàn Kiếm,\r\n"))
	f.Add([]byte("id,name,kind,area,contact\nward-3,\"unterminated,ward,,\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		bridges, _, err := ParseBridgesCSV(bytes.NewReader(b))
		if err != nil {
			return
		}
		for _, br := range bridges {
			if err := br.Validate(); err != nil {
				t.Fatalf("accepted an invalid bridge %+v: %v", br, err)
			}
		}
		var out bytes.Buffer
		if err := WriteBridgesCSV(&out, bridges); err != nil {
			t.Fatal(err)
		}
		again, bad, err := ParseBridgesCSV(&out)
		if err != nil || len(bad) != 0 {
			t.Fatalf("our own export of %+v does not parse: %v %v", bridges, bad, err)
		}
		var want []Bridge
		for _, br := range bridges {
			if br.Kind != KindHub {
				want = append(want, br)
			}
		}
		if len(want) != len(again) || (len(want) > 0 && !reflect.DeepEqual(want, again)) {
			t.Fatalf("round trip changed the registry:\n%+v\n%+v", want, again)
		}
	})
}
