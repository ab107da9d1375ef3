/// How deep a config file or a request body may nest (JSON objects and arrays, YAML collections):
/// a real one needs a handful of levels; thousands are an attack on a recursive parser's stack.
public enum Nesting {
    public static let maximumDepth = 64
}
