using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;
using System.Numerics;
using System.Text.Json;
using TauCluster.Engine;
using TauCluster.Grains;

namespace TauCluster.Client;

/// <summary>
/// What several commands share: how an option is declared (so that every command's help shows its value and default
/// alike and every number is refused with the same message), the model, device and session options, the sampling and
/// cluster option sets, comma-separated lists, an empty <c>--out</c>, and progress output.
/// </summary>
internal static class CommandSupport
{
    public static readonly JsonSerializerOptions SnakeCase = new() { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };

    /// <summary>A text option; <paramref name="defaultValue"/>, when given, is what it reads when absent, and what the help shows.</summary>
    public static Option<string> Text(string name, string helpName, string description, string? defaultValue = null, bool required = false)
    {
        var option = new Option<string>(name) { HelpName = helpName, Description = description, Required = required };
        if (defaultValue is not null) option.DefaultValueFactory = _ => defaultValue;
        return option;
    }

    /// <summary>A number with a default, which the help shows.</summary>
    public static Option<T> Number<T>(string name, string helpName, string description, T defaultValue) where T : struct, INumber<T> =>
        new(name) { HelpName = helpName, Description = description, DefaultValueFactory = _ => defaultValue, CustomParser = r => ParseNumber<T>(r, name) ?? defaultValue };

    /// <summary>A number that is null when absent: the command (or the engine) decides what no value means.</summary>
    public static Option<T?> OptionalNumber<T>(string name, string helpName, string description) where T : struct, INumber<T> =>
        new(name) { HelpName = helpName, Description = description, CustomParser = r => ParseNumber<T>(r, name) };

    public static Option<bool> Flag(string name, string description) => new(name) { Description = description };

    /// <summary>A description whose default is not a value but a rule, shown as the help shows a value's.</summary>
    public static string WithDefault(string description, string defaultText) => $"{description} [default: {defaultText}]";

    /// <summary>Invariant numbers (a decimal point whatever the locale), refused with the option's name and the text given.</summary>
    private static T? ParseNumber<T>(ArgumentResult result, string name) where T : struct, INumber<T>
    {
        if (result.Tokens.Count == 0) return null;   // the parser reports the missing value itself
        string text = result.Tokens[0].Value;
        var style = T.CreateTruncating(0.5) != T.Zero ? NumberStyles.Float : NumberStyles.Integer;   // a type that holds ½ takes decimals
        if (T.TryParse(text, style, CultureInfo.InvariantCulture, out var value)) return value;
        result.AddError($"option '{name}' has an invalid value '{text}'");
        return null;
    }

    /// <summary>Whether the user gave <paramref name="option"/> (not merely its default).</summary>
    public static bool Given(this ParseResult result, Option option) => result.GetResult(option) is { Implicit: false };

    /// <summary>A command that only groups others (<c>tau bench</c>): run alone, it names them.</summary>
    public static Command Group(string name, string description, params Command[] commands)
    {
        var group = new Command(name, description);
        foreach (var command in commands) group.Subcommands.Add(command);
        group.SetAction((Func<ParseResult, int>)(_ => throw new UsageException(
            $"tau {name} needs a command: {string.Join(", ", commands.Select(c => c.Name))} (see tau {name} --help)")));
        return group;
    }

    /// <summary><c>--model</c>: a model directory, or a name under $TAU_HOME/models (with <c>--cluster</c>, a name the silos know).</summary>
    public static Option<string> ModelOption(string defaultName) =>
        Text("--model", "DIR|NAME",
            "a model directory or a name under $TAU_HOME/models: default is the built-in byte-level Tauformer trained on the KJV, paper the random-weights bench shape",
            defaultName);

    public static Option<string> DomainOption() =>
        Text("--domain", "DIR|NAME", "score tau attention against this domain's Laplacian (a manifold directory or name)");

    public static Option<string> SessionOption() => Text("--session", "ID", "the session to continue or create [default: a new one]");

    /// <summary><c>--device</c>: cpu (the default), cuda, cuda:N or ilgpu-cpu.</summary>
    public static Option<string> DeviceOption(string description = "where the model runs") =>
        Text("--device", "cpu|cuda[:N]|ilgpu-cpu", description, "cpu");

    public static Option<bool> JsonOption() => Flag("--json", "print one JSON object on stdout");

    public static ComputeDevice Device(this ParseResult result, Option<string> device) => ComputeDevice.Parse(result.GetValue(device));

    /// <summary>An embedded silo's settings: models and manifolds by name under $TAU_HOME.</summary>
    public static TauClusterOptions EmbeddedOptions()
    {
        // Roots only where they exist: a fresh $TAU_HOME has none yet, and a silo refuses a root that is not there.
        var options = new TauClusterOptions();
        var models = Path.Combine(options.DataDirectory, "models");
        var manifolds = Path.Combine(options.DataDirectory, "manifolds");
        options.ModelsRoot = Directory.Exists(models) ? models : null;
        options.ManifoldsRoot = Directory.Exists(manifolds) ? manifolds : null;
        return options;
    }

    /// <summary>A name for what the user gave: a plain name as it is, a directory configured under a name of its own.</summary>
    public static string LocalName(string kind, string nameOrDirectory, Dictionary<string, string> configured)
    {
        if (!Directory.Exists(nameOrDirectory))
            return Names.IsValid(nameOrDirectory) ? nameOrDirectory
                : throw new UnknownNameException(kind, nameOrDirectory, "not a directory, nor a plain name");
        // The folder name plus a hash of the full path: two folders of the same name are two models, and a session that
        // ran on one refuses the other ("already runs model …") instead of replaying its tokens on other weights.
        var full = Path.GetFullPath(nameOrDirectory).TrimEnd(Path.DirectorySeparatorChar);
        var folder = Path.GetFileName(full);
        var hash = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(full)))[..8];
        var name = Names.IsValid($"{folder}-{hash}") ? $"{folder}-{hash}" : $"local-{kind}-{hash}";
        configured[name] = full;
        return name;
    }

    /// <summary>
    /// A model that a command runs in this process rather than on a silo (<c>tau bench</c>, <c>tau eval</c>): what the
    /// embedded silo would serve under the same name, from the same model store.
    /// </summary>
    public static TauModel LocalModel(TauClusterOptions options, string nameOrDirectory, out string name)
    {
        name = LocalName("model", nameOrDirectory, options.Models);
        return new ModelStore(Microsoft.Extensions.Options.Options.Create(options), Microsoft.Extensions.Logging.Abstractions.NullLogger<ModelStore>.Instance).Get(name);
    }

    public static string SessionId(string? given) => given is { } id ? Names.Require("session", id) : NewSessionId();

    public static string NewSessionId() => $"s-{Guid.NewGuid():N}"[..14];

    /// <summary>A count given as <paramref name="option"/>: at least 1.</summary>
    public static int AtLeastOne(int value, string option) =>
        value >= 1 ? value : throw new UsageException($"{option} {value} must be at least 1");

    /// <summary>What the bench commands' lists must be, in <see cref="List"/>'s message when an item does not parse.</summary>
    public const string NumberList = "a comma-separated list of numbers";

    /// <summary><paramref name="option"/>'s comma-separated items; <paramref name="expected"/> says what they must be when one does not parse.</summary>
    public static T[] List<T>(string text, Func<string, T> parse, string option, string expected)
    {
        try
        {
            var items = text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(parse).ToArray();
            return items.Length > 0 ? items : throw new UsageException($"{option} is empty");
        }
        catch (Exception e) when (e is FormatException or OverflowException)
        {
            throw new UsageException($"{option} '{text}' must be {expected}");
        }
    }

    /// <summary>A comma-separated list of counts, each at least 1.</summary>
    public static int[] Counts(string text, string option) =>
        [.. List(text, int.Parse, option, NumberList).Select(count => AtLeastOne(count, option))];

    /// <summary>The required <c>--out</c>: a directory that does not exist yet, or an empty one.</summary>
    public static string NewOutputDirectory(string output) =>
        OutputDirectory.NotEmptyError(output) is { } notEmpty ? throw new UsageException(notEmpty) : output;

    public static TaumodeKind ParseTaumode(string text)
    {
        try
        {
            return ModelConfig.ParseTaumode(text, "--tau-mode");
        }
        catch (ModelFormatException e)
        {
            throw new UsageException(e.Message);
        }
    }

    /// <summary>Whether progress lines are for a person watching: stderr is a terminal (not a file, a pipe or a test).</summary>
    public static bool Watched => !Console.IsErrorRedirected;

    /// <summary>Progress for a person watching: on stderr, and only when stderr is a terminal unless it is the summary.</summary>
    public static void Progress(string message, bool always = false)
    {
        if (always || Watched) Console.Error.WriteLine(message);
    }

    /// <summary>A duration as h:mm:ss, the hours unbounded.</summary>
    public static string Clock(TimeSpan time) => string.Create(CultureInfo.InvariantCulture, $"{(int)time.TotalHours}:{time:mm\\:ss}");
}
