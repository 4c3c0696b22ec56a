using TauCluster.Engine;

namespace TauCluster.Grains;

internal static class SamplingSettingsOptions
{
    /// <summary>The engine's options for a session's settings, validated by the same rules as the settings themselves.</summary>
    public static SamplingOptions ToOptions(this SamplingSettings settings) =>
        new SamplingOptions(settings.Temperature, settings.TopK, settings.TopP, settings.Seed,
            settings.PresencePenalty, settings.FrequencyPenalty, settings.RepetitionPenalty ?? 1, settings.MinP,
            settings.LogitBias is { } bias ? bias.Tokens.Zip(bias.Biases).ToArray() : null).Validate();
}
