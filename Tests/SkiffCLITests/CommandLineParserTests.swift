import SkiffCLI
import Testing

/// The parser on a small command tree shaped like skiff's: both option forms,
/// repeated options, flags, defaults, `--`, help and version, and every way a
/// command line can be wrong (each a `UsageError` naming the option).
struct CommandLineParserTests {
    static let run = Command(
        name: "run", abstract: "Boot a guest.", discussion: "Long text about booting.\n\nExample:\n  skiff run --kernel k",
        options: [
            .option("kernel", value: "path", help: "Kernel image."),
            .option("cpus", value: "n", .integer, default: "1", help: "Number of vCPUs."),
            .option("memory", value: "size", .custom(expected: "a size such as 512M") { $0.hasSuffix("M") },
                    default: "256M", help: "Guest RAM."),
            .option("limit", value: "ms", .unsigned, help: "A limit."),
            .repeated("disk", value: "spec", help: "A disk. Repeat for more."),
            .flag("paused", help: "Start paused."),
            .flag("force-share", short: "U", help: "Share."),
            .option("api-socket", value: "path", required: false, help: "Socket."),
        ],
        run: { _ in })
    static let snapshot = Command(
        name: "snapshot", abstract: "Snapshot.",
        options: [.option("api-socket", value: "path", required: true, help: "The socket.")],
        positionals: [Positional("dir", help: "Where.")], run: { _ in })
    static let hidden = Command(name: "self-test", abstract: "Hidden.", isHidden: true, run: { _ in })
    static let image = Command(name: "image", abstract: "Images.", subcommands: [
        Command(name: "info", abstract: "Image info.", options: [.flag("force-share", short: "U", help: "Share.")],
                positionals: [Positional("file", help: "The image.")], run: { _ in }),
    ])
    static let parser = CommandLineParser(
        root: Command(name: "skiff", abstract: "A VMM.", subcommands: [run, snapshot, hidden, image]), version: "9.9.9")

    /// The arguments of a successful parse, or the test fails.
    func parsed(_ arguments: [String]) throws -> (String, ParsedArguments) {
        guard case .run(let command, let parsed) = try Self.parser.parse(arguments) else {
            Issue.record("\(arguments) did not parse to a command to run")
            throw UsageError("not run", commandPath: "")
        }
        return (command.name, parsed)
    }

    func usageError(_ arguments: [String]) -> UsageError? {
        do {
            _ = try Self.parser.parse(arguments)
            return nil
        } catch let error as UsageError {
            return error
        } catch {
            return nil
        }
    }

    func helpText(_ arguments: [String]) throws -> String {
        guard case .help(let text) = try Self.parser.parse(arguments) else {
            Issue.record("\(arguments) gave no help")
            return ""
        }
        return text
    }

    @Test func bothOptionFormsAndDefaults() throws {
        let (name, a) = try parsed(["run", "--kernel", "vmlinux", "--cpus=4"])
        #expect(name == "run")
        #expect(a.string("kernel") == "vmlinux")
        #expect(try a.integer("cpus", as: Int.self) == 4)
        #expect(a.string("memory") == "256M")  // the default
        #expect(!a.isGiven("memory") && a.isGiven("kernel"))
        #expect(a.string("api-socket") == nil)
        let (_, b) = try parsed(["run", "--kernel=a=b", "--memory", "64M"])
        #expect(b.string("kernel") == "a=b")  // only the first '=' splits
        #expect(b.string("memory") == "64M")
    }

    @Test func emptyAndDashValuesAndNegativeNumbers() throws {
        let (_, a) = try parsed(["run", "--kernel", "", "--cpus", "-3"])
        #expect(a.string("kernel") == "")
        #expect(try a.integer("cpus", as: Int.self) == -3)
        let (_, b) = try parsed(["run", "--kernel", "-", "--cpus=-3"])
        #expect(b.string("kernel") == "-")
        #expect(try b.integer("cpus", as: Int.self) == -3)
    }

    @Test func repeatedOptionsKeepEveryValueInOrder() throws {
        let (_, a) = try parsed(["run", "--disk", "path=a", "--paused", "--disk=path=b", "--disk", "path=c"])
        #expect(a.strings("disk") == ["path=a", "path=b", "path=c"])
        #expect(a.flag("paused"))
        let (_, none) = try parsed(["run"])
        #expect(none.strings("disk").isEmpty && !none.flag("paused"))
        // A single-valued option given twice: the last wins.
        let (_, twice) = try parsed(["run", "--kernel", "a", "--kernel", "b"])
        #expect(twice.string("kernel") == "b")
    }

    @Test func shortFlagAndPositionalsAnywhere() throws {
        let (name, a) = try parsed(["image", "info", "-U", "disk.qcow2"])
        #expect(name == "info")
        #expect(a.argument("file") == "disk.qcow2" && a.flag("force-share"))
        let (_, b) = try parsed(["snapshot", "/tmp/snap", "--api-socket", "/tmp/s"])
        #expect(b.argument("dir") == "/tmp/snap" && b.string("api-socket") == "/tmp/s")
    }

    @Test func doubleDashEndsOptions() throws {
        let (_, a) = try parsed(["snapshot", "--api-socket", "s", "--", "--help"])
        #expect(a.argument("dir") == "--help")
        #expect(usageError(["snapshot", "--api-socket", "s", "--", "a", "b"])?.message == "unexpected argument 'b'")
    }

    @Test func missingValue() {
        let end = usageError(["run", "--kernel"])
        #expect(end?.message == "missing value for '--kernel <path>'")
        #expect(end?.description == "missing value for '--kernel <path>' (see 'skiff run --help')")
        #expect(usageError(["run", "--kernel", "--paused"])?.message == "missing value for '--kernel <path>'")
        #expect(usageError(["snapshot", "dir"])?.message == "missing '--api-socket <path>'")
        #expect(usageError(["snapshot", "--api-socket", "s"])?.message == "missing '<dir>'")
    }

    @Test func unknownOptionsAndArguments() {
        #expect(usageError(["run", "--kernal", "x"])?.message == "unknown option '--kernal'")
        #expect(usageError(["run", "--kernal=x"])?.message == "unknown option '--kernal'")
        #expect(usageError(["run", "-x"])?.message == "unknown option '-x'")
        #expect(usageError(["run", "-UU"])?.message == "unknown option '-UU'")
        #expect(usageError(["run", "stray"])?.message == "unexpected argument 'stray'")
        #expect(usageError(["run", "--paused=yes"])?.message == "--paused takes no value")
        #expect(usageError(["frobnicate"])?.message == "unknown subcommand 'frobnicate'")
        #expect(usageError(["frobnicate"])?.commandPath == "skiff")
        #expect(usageError(["image", "--size", "1"])?.message == "unknown option '--size'")
        #expect(usageError(["help", "nope"])?.message == "unknown subcommand 'nope'")
    }

    @Test func badNumbersAndSizes() throws {
        #expect(usageError(["run", "--cpus", "two"])?.message == "invalid --cpus 'two': give a whole number")
        #expect(usageError(["run", "--cpus="])?.message == "invalid --cpus '': give a whole number")
        #expect(usageError(["run", "--cpus", "1.5"])?.message == "invalid --cpus '1.5': give a whole number")
        #expect(usageError(["run", "--limit", "-1"])?.message == "invalid --limit '-1': give a whole number of 0 or more")
        #expect(usageError(["run", "--memory", "12Q"])?.message == "invalid --memory '12Q': give a size such as 512M")
        #expect(usageError(["run", "--memory=12Q"])?.commandPath == "skiff run")
        // Parsed as Int64, then too big for the type the command asks for.
        let (_, a) = try parsed(["run", "--cpus", "300"])
        #expect(throws: UsageError.self) { try a.integer("cpus", as: UInt8.self) }
        let (_, b) = try parsed(["run", "--limit", "18446744073709551615"])
        #expect(try b.integer("limit", as: UInt64.self) == UInt64.max)
    }

    @Test func helpAndVersionAnywhereBeforeDoubleDash() throws {
        for arguments in [["run", "--help"], ["run", "-h"], ["run", "--cpus", "x", "--help"], ["help", "run"]] {
            #expect(try helpText(arguments).hasPrefix("OVERVIEW: Boot a guest."), "\(arguments)")
        }
        #expect(try helpText([]).hasPrefix("OVERVIEW: A VMM."))
        #expect(try helpText(["image"]).hasPrefix("OVERVIEW: Images."))
        #expect(try helpText(["help", "image", "info"]).hasPrefix("OVERVIEW: Image info."))
        for arguments in [["--version"], ["run", "--version"], ["image", "info", "--version"]] {
            guard case .version(let v) = try Self.parser.parse(arguments) else {
                Issue.record("\(arguments): no version")
                continue
            }
            #expect(v == "9.9.9")
        }
    }

    @Test func helpListsEveryOptionWithValueNamesHelpAndDefaults() throws {
        let text = try helpText(["run", "--help"])
        for option in Self.run.options {
            #expect(text.contains(option.synopsis), "\(option.name)")
            #expect(text.contains(option.help), "\(option.name)")
        }
        #expect(text.contains("  --cpus <n>              Number of vCPUs. (default: 1)\n"))
        #expect(text.contains("  -U, --force-share       Share.\n"))
        #expect(text.contains("  -h, --help              Show help information.\n"))
        #expect(text.contains("  --version               Show the version.\n"))
        #expect(text.contains("\nLong text about booting.\n\nExample:\n  skiff run --kernel k\n"))
        #expect(text.contains("USAGE: skiff run [--kernel <path>] [--cpus <n>]"))
        #expect(text.contains("[--disk <spec> ...]") && text.contains("[--paused]"))
        #expect(text.split(separator: "\n").allSatisfy { $0.count <= 80 }, "\(text)")

        let snapshot = try helpText(["snapshot", "--help"])
        #expect(snapshot.contains("USAGE: skiff snapshot --api-socket <path> <dir>\n"))
        #expect(snapshot.contains("ARGUMENTS:\n  <dir>                   Where.\n"))
    }

    @Test func rootHelpListsVisibleSubcommandsOnly() throws {
        let text = try helpText(["--help"])
        #expect(text.contains("USAGE: skiff <subcommand>"))
        #expect(text.contains("SUBCOMMANDS:\n  run                     Boot a guest.\n"))
        #expect(text.contains("  image                   Images.\n"))
        #expect(!text.contains("self-test"))
        #expect(text.contains("See 'skiff help <subcommand>' for detailed help."))
        #expect(try helpText(["image", "--help"]).contains("See 'skiff help image <subcommand>'"))
        // The hidden command still runs.
        #expect(try parsed(["self-test"]).0 == "self-test")
    }

    @Test func longLabelsAndTextWrap() throws {
        let long = Command(name: "x", abstract: "X.", options: [
            .option("a-rather-long-option-name", value: "value-name",
                    help: String(repeating: "word ", count: 40) + "end."),
        ], run: { _ in })
        let parser = CommandLineParser(root: Command(name: "skiff", abstract: "A.", subcommands: [long]), version: "1")
        guard case .help(let text) = try parser.parse(["x", "-h"]) else {
            Issue.record("no help")
            return
        }
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        let at = try #require(lines.firstIndex { $0 == "  --a-rather-long-option-name <value-name>" })
        #expect(lines[at + 1].hasPrefix(String(repeating: " ", count: 26) + "word word"))
        #expect(lines.allSatisfy { $0.count <= 80 }, "\(text)")
        #expect(text.contains("end."))
    }
}
