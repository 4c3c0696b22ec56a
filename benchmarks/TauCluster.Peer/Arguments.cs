using System.Globalization;

namespace TauCluster.Peer;

/// <summary><c>--name value</c> options and <c>--flag</c> switches; anything else is a usage error.</summary>
public sealed class Arguments
{
    private static readonly string[] Options = ["--sequences", "--tokens", "--contexts", "--steps", "--warmup", "--repeats", "--threads", "--only", "--gguf", "--kv-unified", "--flash-attention", "--dtype"];
    private static readonly string[] Flags = ["--json", "--verbose"];

    private readonly Dictionary<string, string> _values = [];
    private readonly HashSet<string> _flags = [];

    public Arguments(IReadOnlyList<string> args)
    {
        for (int i = 0; i < args.Count; i++)
        {
            if (Flags.Contains(args[i])) _flags.Add(args[i]);
            else if (Options.Contains(args[i]) && i + 1 < args.Count) _values[args[i]] = args[++i];
            else throw new ArgumentException($"unknown or incomplete argument '{args[i]}'");
        }
    }

    public bool Has(string flag) => _flags.Contains(flag);

    public string? String(string name) => _values.GetValueOrDefault(name);

    public int? Int(string name) => String(name) is { } s ? Positive(name, s) : null;

    public int[]? Ints(string name) => String(name)?.Split(',').Select(s => Positive(name, s)).ToArray();

    private static int Positive(string name, string s) =>
        int.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out int v) && v > 0 ? v
            : throw new ArgumentException($"{name} takes positive integers, not '{s}'");
}
