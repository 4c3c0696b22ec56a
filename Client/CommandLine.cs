using System.CommandLine;
using System.CommandLine.Help;
using System.CommandLine.Invocation;
using System.CommandLine.Parsing;

namespace TauCluster.Client;

/// <summary>A usage error found after parsing (options that exclude each other, a value out of range): one line, exit code 2.</summary>
public sealed class UsageException(string message) : Exception(message);

/// <summary>The <c>tau</c> command tree, and how a line that does not parse is reported.</summary>
internal static class TauCommandLine
{
    private const string Description = """
        tau — serve Tauformer models on an Orleans cluster

        Without --cluster, tau starts an embedded one-silo cluster in this process; its sessions are kept under
        $TAU_HOME (default ~/.cache/taucluster). Without --model it runs the built-in default model, a byte-level
        Tauformer trained on the King James Bible; `paper` is the paper's bench shape with seeded random weights,
        which tau bench times by default. Every command takes --help; an option's value follows it (--max-tokens 80)
        or an equals sign (--max-tokens=80).
        """;

    public static RootCommand Root()
    {
        var train = TrainCommand.Command();
        var root = new RootCommand(Description)
        {
            GenerateCommand.Command(),
            ChatCommand.Command(),
            SessionsCommand.Command(),
            CommandSupport.Group("model", "make models", ModelInitCommand.Command()),
            CommandSupport.Group("manifold", "build and inspect manifolds, the graph Laplacians of tau attention",
                ManifoldBuildCommand.Command(), ManifoldInspectCommand.Command()),
            train,
            EvalCommand.Command(),
            CommandSupport.Group("bench", "time the engine, the cluster and a device",
                BenchDecodeCommand.Command(), BenchKernelsCommand.Command(), BenchSessionsCommand.Command(), BenchDeviceCommand.Command()),
            CompletionCommand.Command(),
        };
        var help = new Command("help", "show this help") { Hidden = true };   // `tau help` came before --help, and still works
        help.SetAction(_ => root.Parse(["--help"]).Invoke());
        root.Subcommands.Add(help);
        root.SetAction(_ => root.Parse(["--help"]).Invoke());
        var helpOption = root.Options.OfType<HelpOption>().Single();
        helpOption.Action = new HelpWithNotes((HelpAction)helpOption.Action!, new Dictionary<Command, string> { [train] = TrainCommand.Notes });
        return root;
    }

    /// <summary>The library's help, then a command's notes where it has some (what a table of options cannot say).</summary>
    private sealed class HelpWithNotes(HelpAction help, Dictionary<Command, string> notes) : SynchronousCommandLineAction
    {
        public override int Invoke(ParseResult parseResult)
        {
            int exitCode = help.Invoke(parseResult);
            if (notes.TryGetValue(parseResult.CommandResult.Command, out var text)) parseResult.InvocationConfiguration.Output.WriteLine(text);
            return exitCode;
        }
    }

    /// <summary>
    /// A line that does not parse: one line saying what is wrong (the first word the parser did not know, or its
    /// first error), then the names the library suggests for that word, all on stderr; exit code 2.
    /// </summary>
    public static int ReportParseError(ParseResult result)
    {
        if (result.UnmatchedTokens is not [var word, ..])
        {
            var message = result.Errors[0].Message.Split(['\r', '\n', '\t'], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            Console.Error.WriteLine($"tau: {string.Join(' ', message)}");   // some of the library's messages list choices a line each
            return 2;
        }
        Console.Error.WriteLine(word.StartsWith('-') ? $"tau: unknown option '{word}'"
            : result.CommandResult.Command.Subcommands.Count > 0 ? $"tau: unknown command '{word}'" : $"tau: unexpected argument '{word}'");
        if (Suggestions(result, word) is { Length: > 0 } suggestions) Console.Error.WriteLine(suggestions);
        return 2;
    }

    /// <summary>
    /// The library's typo corrections for <paramref name="word"/> under the command it was given to: the line reparsed
    /// as that command and the word alone (the values after an unknown option are no typos), and its parse error's
    /// action run without the error list (said already) or the whole help. The library writes them to Output.
    /// </summary>
    private static string Suggestions(ParseResult result, string word)
    {
        var words = new List<string> { word };
        for (var command = result.CommandResult; command.Parent is CommandResult parent; command = parent) words.Insert(0, command.Command.Name);
        var alone = result.RootCommandResult.Command.Parse(words);
        if (alone.Action is not ParseErrorAction action) return "";
        action.ShowHelp = false;
        var suggestions = new StringWriter();
        alone.Invoke(new InvocationConfiguration { Output = suggestions, Error = TextWriter.Null });
        return suggestions.ToString().Trim();
    }
}
