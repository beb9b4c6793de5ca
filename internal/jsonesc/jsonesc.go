// Package jsonesc holds the one JSON escape of a single ASCII byte that
// the hand-written JSON encoders share (token's claims, server's REST
// answers). Which bytes need escaping is each encoder's own rule
// (encoding/json escapes <, > and & too; protojson does not).
package jsonesc

// AppendByte appends c, an ASCII byte that must be escaped in a JSON
// string, in its escaped form: \" \\ \b \f \n \r \t, or \u00XX.
func AppendByte(b []byte, c byte) []byte {
	switch c {
	case '"', '\\':
		return append(b, '\\', c)
	case '\b':
		return append(b, '\\', 'b')
	case '\f':
		return append(b, '\\', 'f')
	case '\n':
		return append(b, '\\', 'n')
	case '\r':
		return append(b, '\\', 'r')
	case '\t':
		return append(b, '\\', 't')
	default:
		const hex = "0123456789abcdef"
		return append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
	}
}
