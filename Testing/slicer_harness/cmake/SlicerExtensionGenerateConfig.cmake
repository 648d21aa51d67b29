# Stand-in for Slicer's SlicerExtensionGenerateConfig.cmake (${Slicer_EXTENSION_GENERATE_CONFIG}).
# In Slicer it writes <Extension>Config.cmake into the build tree so that other extensions can
# build against this one (find_package(<Extension>)).  Nothing builds against CephLandmarks here.
