enum Bench {
    static func main(_ args: [String]) throws {}
}
