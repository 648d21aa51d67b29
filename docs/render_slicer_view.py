"""Render docs/slicer_view.png headless: a Slicer slice view (slicer-core's own slice logic and the
markups and model displayable managers, offscreen) with detected landmarks and credible-region contours.

    python docs/render_slicer_view.py IMAGE MODEL.safetensors [--out docs/slicer_view.png] [--spacing 0.1]

The nodes are made by CephLandmarks/CephLandmarksSlicer/ (volumes, markups, contours) as in Slicer.
Needs slicer-core and
an offscreen OpenGL (EGL or OSMesa) VTK.  The image is placed as Slicer places a PNG/JPEG
(IJK-to-RAS = diag(-1, -1, 1)), so the axial slice view shows it upright.
"""

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "CephLandmarks"), str(ROOT / "Testing")]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("image")
    p.add_argument("model")
    p.add_argument("--out", default=str(ROOT / "docs" / "slicer_view_points.png"))
    p.add_argument("--spacing", type=float, default=0.1)
    p.add_argument("--size", default="560x640", help="view WIDTHxHEIGHT in pixels")
    p.add_argument("--hide-image", action="store_true",
                   help="blank the radiograph after detection: only points and contours are drawn "
                        "(for pictures of ISBI images, which must not be published)")
    a = p.parse_args()

    import slicer
    import vtk
    from slicer_fixtures import headlessScene, makeVolume

    from CephLandmarksLib.detection.predictor import LandmarkDetector
    from CephLandmarksLib.imaging.images import read_radiograph
    from CephLandmarksSlicer.contours import createContourModels
    from CephLandmarksSlicer.markups import createLandmarksNode
    from CephLandmarksSlicer.volumes import radiographFromVolume

    scene = headlessScene()
    appLogic = scene._cephKeepAlive[0]
    appLogic.SetSliceLogics(vtk.vtkCollection())
    appLogic.SetViewLogics(vtk.vtkCollection())
    scene.AddNode(slicer.vtkMRMLCrosshairNode())
    slicer.vtkMRMLSliceNode.AddDefaultSliceOrientationPresets(scene, True)

    rad = read_radiograph(a.image, a.spacing)
    volume = makeVolume(scene, rad.pixels, rad.spacing_mm, (0.0, 0.0, 0.0),
                        [[-1, 0, 0], [0, -1, 0], [0, 0, 1]], Path(a.image).stem)
    detection = LandmarkDetector(a.model).detect(radiographFromVolume(volume))
    node = createLandmarksNode(scene, detection, volume)
    createContourModels(scene, detection, volume, node)
    if a.hide_image:
        volume.GetImageData().GetPointData().GetScalars().Fill(30)
        volume.GetImageData().Modified()
    display = node.GetDisplayNode()
    display.SetGlyphScale(2.0)
    display.SetTextScale(3.5)

    width, height = (int(v) for v in a.size.split("x"))
    window = vtk.vtkRenderWindow()
    window.SetOffScreenRendering(1)
    window.SetSize(width, height)
    renderer = vtk.vtkRenderer()
    window.AddRenderer(renderer)
    interactor = vtk.vtkGenericRenderWindowInteractor()  # widgets need one; no X display involved
    interactor.SetRenderWindow(window)

    factory = slicer.vtkMRMLSliceViewDisplayableManagerFactory.GetInstance()
    factory.SetMRMLApplicationLogic(appLogic)
    for name in ("vtkMRMLModelSliceDisplayableManager", "vtkMRMLMarkupsDisplayableManager"):
        if not factory.IsDisplayableManagerRegistered(name):
            factory.RegisterDisplayableManager(name)
    group = factory.InstantiateDisplayableManagers(renderer)

    sliceLogic = slicer.vtkMRMLSliceLogic()
    sliceLogic.SetMRMLApplicationLogic(appLogic)
    sliceLogic.SetMRMLScene(scene)
    appLogic.GetSliceLogics().AddItem(sliceLogic)
    sliceNode = sliceLogic.AddSliceNode("Red")
    sliceNode.SetOrientation("Axial")  # with the presets above: patient right on screen left, as in Slicer
    group.SetMRMLDisplayableNode(sliceNode)
    sliceLogic.GetSliceCompositeNode().SetBackgroundVolumeID(volume.GetID())
    sliceLogic.ResizeSliceNode(width, height)
    sliceLogic.FitSliceToBackground()
    mapper = vtk.vtkImageMapper()  # Slicer's slice image (already window/levelled to 8 bits)
    mapper.SetInputConnection(sliceLogic.GetImageDataConnection())
    mapper.SetColorWindow(255)
    mapper.SetColorLevel(127.5)
    actor = vtk.vtkActor2D()
    actor.SetMapper(mapper)
    actor.GetProperty().SetDisplayLocationToBackground()
    renderer.AddViewProp(actor)
    window.Render()
    window.Render()

    grab = vtk.vtkWindowToImageFilter()
    grab.SetInput(window)
    grab.Update()
    writer = vtk.vtkPNGWriter()
    writer.SetCompressionLevel(9)
    writer.SetFileName(a.out)
    writer.SetInputConnection(grab.GetOutputPort())
    writer.Write()
    flagged = [lm.abbreviation for lm in detection.landmarks if lm.flagged]
    print(f"{a.out}: {len(detection.landmarks)} landmarks, flagged: {', '.join(flagged) or 'none'}")


if __name__ == "__main__":
    from CephLandmarksLib.errors import CephError

    try:
        main()
    except CephError as e:  # a missing or unreadable image or model: one line, no traceback
        sys.exit(f"error: {e}")
