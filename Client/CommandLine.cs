namespace TauCluster.Client;

/// <summary>A usage error: printed as one line, exit code 2.</summary>
public sealed class UsageException(string message) : Exception(message);

/// <summary>
/// <c>--name value</c> options and <c>--flag</c> switches after the command words. Every option must be known
/// to the command, and every value must parse, or the whole line is refused with one clear message.
/// </summary>
public sealed class ParsedArguments
{
    private readonly Dictionary<string, string?> options = new(StringComparer.Ordinal);

    public ParsedArguments(IReadOnlyList<string> args, IReadOnlyCollection<string> valueOptions, IReadOnlyCollection<string> flags)
    {
        for (int i = 0; i < args.Count; i++)
        {
            string name = args[i];
            if (!name.StartsWith("--", StringComparison.Ordinal)) throw new UsageException($"unexpected argument '{name}'");
            if (flags.Contains(name)) { options[name] = null; continue; }
            if (!valueOptions.Contains(name)) throw new UsageException($"unknown option '{name}'");
            if (i + 1 >= args.Count) throw new UsageException($"option '{name}' needs a value");
            if (!options.TryAdd(name, args[++i])) throw new UsageException($"option '{name}' is given twice");
        }
    }

    public bool Has(string name) => options.ContainsKey(name);

    public string? String(string name) => options.GetValueOrDefault(name);

    public string Required(string name) => String(name) ?? throw new UsageException($"option '{name}' is required");

    public int? Int(string name) => Parse<int>(name, s => int.TryParse(s, out var v) ? v : null);

    public ulong? ULong(string name) => Parse<ulong>(name, s => ulong.TryParse(s, out var v) ? v : null);

    public double? Double(string name) => Parse<double>(name, s =>
        double.TryParse(s, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out var v) ? v : null);

    private T? Parse<T>(string name, Func<string, T?> parse) where T : struct =>
        String(name) is { } text ? parse(text) ?? throw new UsageException($"option '{name}' has an invalid value '{text}'") : null;
}
